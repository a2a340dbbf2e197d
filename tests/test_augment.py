"""Augmentation applies only the symmetries the config allows (a 6 must never become a 9)."""
import itertools

import pytest
import torch

from cnnpipe.augment import (IDENTITY, Transform, apply, apply_each, dihedral,
                             random_augment, shift_each)
from cnnpipe.config import Augment


def six() -> torch.Tensor:
    """An 8x8 '6': a loop at the bottom, a stem up the left and curling right at the top (no symmetry)."""
    img = torch.zeros(8, 8)
    img[1, 2:6] = 1.0           # top curl
    img[1:7, 1] = 1.0           # stem
    img[4, 1:6] = 1.0           # loop top
    img[6, 1:6] = 1.0           # loop bottom
    img[4:7, 5] = 1.0           # loop right side
    img[2, 5] = 0.5             # a tail: makes every dihedral image distinct
    return img[None]            # (C=1, H, W)


def all_dihedral(img: torch.Tensor) -> dict[Transform, torch.Tensor]:
    return {Transform(k, f): apply(img, Transform(k, f)) for f in (False, True) for k in range(4)}


def shifts(img: torch.Tensor, t: int) -> list[torch.Tensor]:
    return [torch.roll(img, (dy, dx), (-2, -1)) for dy in range(-t, t + 1) for dx in range(-t, t + 1)]


def test_the_six_has_eight_distinct_orientations():
    imgs = list(all_dihedral(six()).values())
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(imgs, 2))


@pytest.mark.parametrize("hflip,vflip,rot90,expected", [
    (True, True, True, 8), (True, False, True, 8), (False, False, True, 4),
    (True, True, False, 3), (True, False, False, 2), (False, True, False, 2), (False, False, False, 1)])
def test_dihedral_sets(hflip, vflip, rot90, expected):
    ts = dihedral(Augment(hflip, vflip, rot90, 0))
    assert len(ts) == expected == len(set(ts)) and ts[0] == IDENTITY
    if not rot90:
        assert all(t.k in (0, 2) and (t.k == 0 or t.flip) for t in ts)  # no bare rotation


@pytest.mark.parametrize("hflip,vflip,translate", [(True, True, 0), (True, True, 1), (False, False, 2),
                                                   (True, False, 1)])
def test_a_six_never_becomes_a_nine_without_rot90(hflip, vflip, translate):
    img = six()
    nine = apply(img, Transform(2))  # the 180-degree turn
    nines = shifts(nine, translate)
    batch = img[None].repeat(400, 1, 1, 1)
    out = random_augment(batch, Augment(hflip, vflip, False, translate), torch.Generator().manual_seed(1))
    allowed = [apply(img, t) for t in dihedral(Augment(hflip, vflip, False, 0))]
    allowed = [s for a in allowed for s in shifts(a, translate)]
    for o in out:
        assert not any(torch.equal(o, n) for n in nines)
        assert any(torch.equal(o, a) for a in allowed)


def test_all_eight_orientations_appear_when_allowed():
    img = six()
    out = random_augment(img[None].repeat(400, 1, 1, 1), Augment(True, True, True, 0),
                         torch.Generator().manual_seed(0))
    seen = {t for t, ref in all_dihedral(img).items() for o in out if torch.equal(o, ref)}
    assert len(seen) == 8


def test_flips_only_give_exactly_identity_hflip_vflip():
    img = six()
    out = random_augment(img[None].repeat(300, 1, 1, 1), Augment(True, True, False, 0),
                         torch.Generator().manual_seed(0))
    refs = {"id": img, "h": torch.flip(img, (-1,)), "v": torch.flip(img, (-2,))}
    counts = {k: sum(torch.equal(o, r) for o in out) for k, r in refs.items()}
    assert sum(counts.values()) == 300 and min(counts.values()) > 60


def test_translate_only_shifts_within_range_and_uses_the_range():
    img = six()
    out = random_augment(img[None].repeat(500, 1, 1, 1), Augment(False, False, False, 2),
                         torch.Generator().manual_seed(0))
    found = set()
    for o in out:
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if torch.equal(o, torch.roll(img, (dy, dx), (-2, -1)))]
        assert hits
        found.add(hits[0])
    assert len(found) == 25


def test_mask_channel_moves_with_the_image():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, 2, 8, 8, generator=g)
    mask = (x[:, :1] > 0.5).float()
    out = random_augment(torch.cat([x, mask], 1), Augment(True, True, True, 2), g)
    assert torch.equal((out[:, :1] > 0.5).float(), out[:, 2:])


def test_apply_each_and_shift_each_match_single_transforms():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 2, 6, 6, generator=g)
    ts = [Transform(k, f, dy, dx) for f in (False, True) for k in range(4)
          for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]
    which = torch.randint(len(ts), (20,), generator=g)
    out = apply_each(x, ts, which)
    for i in range(20):
        assert torch.equal(out[i], apply(x[i], ts[which[i]]))
    dy, dx = torch.randint(-3, 4, (2, 20), generator=g)
    sh = shift_each(x, dy, dx)
    for i in range(20):
        assert torch.equal(sh[i], torch.roll(x[i], (int(dy[i]), int(dx[i])), (-2, -1)))


