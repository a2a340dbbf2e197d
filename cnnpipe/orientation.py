"""Edges running in an unusual direction for where they are: decays in flight, kinks, stray tracks.

In a detector's events every track comes from the vertex, so at each pixel the tracks of a population run
in much the same direction (radially, bent by the field); a track from a decay away from the vertex, or a
kink's daughter, crosses that flow. The structure tensor (Gaussian-weighted sums of products of the Sobel
gradients of the frame, pre-smoothed) gives each pixel's edge orientation as a doubled-angle vector
``v = (Jxx - Jyy, 2 Jxy)``, whose length ``l1 - l2`` is how strongly one orientation dominates (a line:
large; flat sky or an isotropic star: ~0). The population's usual direction at a pixel is the unit-free
mean ``m = E[v] / E[|v|]`` (length 1 where every frame agrees, ~0 where edges run every way, as in sky
frames), and a frame's misfit there is ``(|v| - v . m) / 2``: 0 along the usual direction, ``|v|`` across it.
The ``orientation`` score is the largest misfit over its usual value at that pixel in the population.

Measured on the tiles put back on their frame's raw intensity scale: per-frame normalisation divides
every frame by its own spread, which made the edges of a busy event and of a sparse one incomparable
(dev helical tracks: AP of the score alone 0.25 normalised, 0.37 on the raw scale; README).
"""
from __future__ import annotations

import numpy as np
import torch

from .augment import apply, dihedral
from .config import Augment, Normalise
from .filters import fill_masked, gaussian_blur, sobel
from .normalise import unstretch


def linear(frames: torch.Tensor, intensity_scale: torch.Tensor, stretch: Normalise | None) -> torch.Tensor:
    """Ingested tiles (N, H, W) back on their frame's raw intensity scale, less the frame's offset: the
    ingest normalisation (``stretch``) undone and each tile times its frame's ``intensity_scale``."""
    x = unstretch(frames, stretch.method, stretch.asinh_softening) if stretch is not None else frames
    return x * intensity_scale.to(x.dtype)[:, None, None]


def orientation_field(frames: torch.Tensor, sigma: float, derivative_sigma: float) -> torch.Tensor:
    """Doubled-angle edge orientation ``(Jxx - Jyy, 2 Jxy)`` (N, 2, H, W) of a (N, H, W) batch: the
    structure tensor over a Gaussian window ``sigma`` of the Sobel gradients of the frame smoothed by
    ``derivative_sigma`` (0: not smoothed). NaN pixels are filled with the frame's median and give 0."""
    frames, mask = fill_masked(frames)
    if derivative_sigma > 0:
        frames = gaussian_blur(frames, derivative_sigma)
    gx, gy = sobel(frames)
    jyy, jxy, jxx = gaussian_blur(torch.cat([gy * gy, gy * gx, gx * gx]), sigma).chunk(3)
    return torch.stack([jxx - jyy, 2 * jxy], dim=1).masked_fill(mask[:, None], 0.0)


def vector_symmetry_average(field: np.ndarray, hflip: bool, vflip: bool, rot90: bool) -> np.ndarray:
    """Mean of a doubled-angle field (2, H, W) over the orientation changes the data allows (the set of
    :func:`cnnpipe.augment.dihedral`), each view's vectors turned with it: a mirror image negates the second
    component (the angle changes sign), a quarter turn negates both (the doubled angle turns by 180 degrees)."""
    t = torch.from_numpy(np.asarray(field, dtype=np.float64))
    views = []
    for d in dihedral(Augment(hflip, vflip, rot90, translate=0)):
        view = apply(t, d).clone()
        if d.flip:
            view[1] = -view[1]
        if d.k % 2:
            view = -view
        views.append(view.numpy())
    return np.mean(views, axis=0)


def usual_direction(mean_field: np.ndarray, mean_strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From a population's mean field ``E[v]`` (2, H, W) and mean strength ``E[|v|]`` (H, W), both
    symmetry-averaged: its usual direction ``m`` (2, H, W) and its usual misfit ``E[(|v| - v . m) / 2] =
    (E|v| - E[v] . m) / 2`` (H, W), floored at 1e-3 of its mean (a pixel without edges cannot divide by ~0)."""
    m = mean_field / np.maximum(mean_strength, 1e-30)
    usual = (mean_strength - (mean_field * m).sum(axis=0)) / 2
    return m, np.maximum(usual, 1e-3 * usual.mean() + 1e-12)


def strength(field: torch.Tensor) -> torch.Tensor:
    """``|v|`` per pixel of a field (N, 2, H, W): ``hypot`` of the two components (``norm(dim=1)``, a
    reduction across the channel dimension, took ~100x as long on CPU: 85 against 0.7 ms for 256 64^2 tiles)."""
    return torch.hypot(field[:, 0], field[:, 1])


def misfit(field: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``(|v| - v . m) / 2`` per pixel of a field (N, 2, H, W) against usual directions (N, 2, H, W)."""
    return (strength(field) - field[:, 0] * direction[:, 0] - field[:, 1] * direction[:, 1]) / 2
