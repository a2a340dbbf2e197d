"""Orientation-aware augmentation, on the device, per batch.

Only the symmetries a data set allows (``cfg.augment``) are ever applied: a rotated 6 is a 9, so for
digit-like data rotations are switched off and a 180-degree turn must never happen. Flips are applied
one at a time (never both together), because hflip followed by vflip *is* the 180-degree rotation; all
eight elements of the dihedral group are used only when ``rot90`` and at least one flip are allowed.

A transform is ``Transform(k, flip, dy, dx)``: mirror left-right if ``flip``, then rotate by ``k`` x 90
degrees (``torch.rot90`` on the last two axes), then shift circularly by ``(dy, dx)`` pixels.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .config import Augment


class Transform(NamedTuple):
    k: int = 0          # quarter turns
    flip: bool = False  # left-right mirror, applied before the rotation
    dy: int = 0         # circular shift down (pixels)
    dx: int = 0         # circular shift right (pixels)


IDENTITY = Transform()


def dihedral(aug: Augment) -> list[Transform]:
    """The orientation changes ``aug`` allows, identity first (no translations).

    rot90 + any flip -> the 8 dihedral elements; rot90 alone -> the 4 rotations; flips alone -> identity,
    hflip and/or vflip (vflip = hflip then 180-degree turn; the plain 180-degree turn is not included).
    """
    if aug.rot90 and (aug.hflip or aug.vflip):
        return [Transform(k, f) for f in (False, True) for k in range(4)]
    if aug.rot90:
        return [Transform(k) for k in range(4)]
    out = [IDENTITY]
    if aug.hflip:
        out.append(Transform(0, True))
    if aug.vflip:
        out.append(Transform(2, True))
    return out


_PROBE = torch.arange(9.0).reshape(3, 3)   # no symmetry: each orientation change gives a different array
ORIENTATIONS = [Transform(k, f) for f in (False, True) for k in range(4)]


def _key(x: torch.Tensor) -> tuple:
    return tuple(x.flatten().tolist())


def symmetry_group(aug: Augment) -> list[Transform]:
    """Every orientation change the allowed ones generate (hflip and vflip together give the 180-degree
    turn): the group the data is declared invariant under."""
    gens = dihedral(aug)
    seen = {_key(_PROBE): IDENTITY}
    frontier = [IDENTITY]
    while frontier:
        nxt = []
        for h in frontier:
            for g in gens:
                y = apply(apply(_PROBE, h), g)
                t = next(o for o in ORIENTATIONS if _key(apply(_PROBE, o)) == _key(y))
                if _key(y) not in seen:
                    seen[_key(y)] = t
                    nxt.append(t)
        frontier = nxt
    return list(seen.values())


def pretext_transforms(aug: Augment) -> list[Transform]:
    """The classes of the self-supervised transform-prediction task (Golan & El-Yaniv 2018): one orientation
    change per coset of the symmetry group, identity first.

    Only a transform the data is *not* invariant under can be recognised (predicting an allowed symmetry is
    at chance by construction), so two changes that differ by a symmetry are one class. With every symmetry
    off these are the 8 dihedral elements (a 9 is then recognised as a turned 6); with both flips (and so the
    180-degree turn) allowed, the identity and the quarter turn; with ``rot90`` allowed, nothing is left to
    predict (an empty list: no self-supervised CNN for isotropic data).
    """
    group = symmetry_group(aug)
    classes: list[Transform] = []
    cosets: set[frozenset] = set()
    for g in ORIENTATIONS:
        coset = frozenset(_key(apply(apply(_PROBE, h), g)) for h in group)
        if coset not in cosets:
            cosets.add(coset)
            classes.append(g)
    return classes if len(classes) > 1 else []


def oriented(augment: Augment | dict) -> bool:
    """Whether the data are declared to have an orientation (``augment``: the config's section leaves an
    orientation change that is not a symmetry; with rot90 and a flip allowed there is none). Such frames are
    aligned (a digit upright, a detector's beam axis): where things sit in a frame then means something."""
    return bool(pretext_transforms(augment if isinstance(augment, Augment) else Augment(**augment)))


def cnn_has_task(augment: Augment | dict, labels_csv: str | None) -> bool:
    """Whether the CNN can learn anything: labels to classify, or an orientation change the data is declared
    not invariant under (see :func:`oriented`)."""
    return bool(labels_csv) or oriented(augment)


def apply(x: torch.Tensor, t: Transform) -> torch.Tensor:
    """Apply one transform to a batch ``(..., H, W)``; rotations by 90/270 need square frames."""
    if t.flip:
        x = torch.flip(x, dims=(-1,))
    if t.k % 4:
        x = torch.rot90(x, t.k, dims=(-2, -1))
    if t.dy or t.dx:
        x = torch.roll(x, shifts=(t.dy, t.dx), dims=(-2, -1))
    return x


def apply_each(x: torch.Tensor, transforms: list[Transform], which: torch.Tensor) -> torch.Tensor:
    """Apply ``transforms[which[i]]`` to sample ``i`` of ``x`` (N, ..., H, W); one call per distinct transform."""
    out = torch.empty_like(x)
    which = which.to(x.device)
    for j in torch.unique(which).tolist():
        sel = (which == j).nonzero(as_tuple=True)[0]
        out[sel] = apply(x[sel], transforms[j])
    return out


def shift_each(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Circularly shift sample ``i`` of ``x`` (N, C, H, W) by ``(dy[i], dx[i])`` pixels with one gather."""
    n, _, h, w = x.shape
    dev = x.device
    iy = (torch.arange(h, device=dev)[None, :] - dy.to(dev)[:, None]) % h      # (N, H) source rows
    ix = (torch.arange(w, device=dev)[None, :] - dx.to(dev)[:, None]) % w      # (N, W) source cols
    rows = torch.arange(n, device=dev)[:, None, None]
    return x[rows, :, iy[:, :, None], ix[:, None, :]].permute(0, 3, 1, 2)    # (N, H, W, C) -> (N, C, H, W)


def random_augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Random allowed orientation per sample, then a random shift in [-translate, translate]^2.

    ``x`` is (N, C, H, W) on any device; the random draws come from the CPU generator ``gen`` so that a
    run is reproducible (and resumable) whatever the device. Stack a mask as an extra channel to move it
    with the image.
    """
    n = x.shape[0]
    choices = dihedral(aug)
    if len(choices) > 1:
        x = apply_each(x, choices, torch.randint(len(choices), (n,), generator=gen))
    if aug.translate > 0:
        dy, dx = torch.randint(-aug.translate, aug.translate + 1, (2, n), generator=gen)
        x = shift_each(x, dy, dx)
    return x


def transform_name(t: Transform) -> str:
    """A short readable name: ``identity``, ``flip+rot90``, ``shift(2,0)``..."""
    parts = (["flip"] if t.flip else []) + ([f"rot{90 * t.k}"] if t.k else []) + \
            ([f"shift({t.dy},{t.dx})"] if t.dy or t.dx else [])
    return "+".join(parts) or "identity"
