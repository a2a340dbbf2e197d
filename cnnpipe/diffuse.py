"""Faint extended light that belongs to no source: optical ghosts, scattered light, fringing.

An out-of-focus reflection of a bright star puts 1-3 noise units into every pixel of a ring many pixels
wide; no pixel stands out, so every max-over-pixels score misses it. Summed over its area it is bright.
The ``diffuse`` score looks for such light between the sources:

1. each tile in units of its noise (median and 1.4826 x MAD), pixels more than ``clip`` units above it
   (stars, tracks) or below it (dead columns) masked, the mask grown by a Gaussian of ``grow`` pixels to
   cover their wings;
2. the rest band-passed (a masked Gaussian average at ``sigmas[0]`` less one at ``sigmas[1]``, each divided
   by the average of the mask, so the holes do not pull it down): structure on the scale of a ghost's
   ring stays, the noise averages out and a smooth gradient across the tile is taken off;
3. in units of the band-passed noise, the area (pixels) of the largest 4-connected region above
   ``threshold``: a ghost is one large region; noise, and what is left of the stars' wings, many small ones.

Chosen on the dev sky sets (ghost rings, README): max over pixels of the band-passed map, its variance
and the area at thresholds 1-2 were compared; the area at 1.5 separated ghosts best.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .filters import fill_masked, gaussian_blur, level_noise


def band_noise(small: float, large: float) -> float:
    """Spread of unit white noise after the band-pass: a Gaussian average over ``small`` pixels less one over
    ``large`` (0: none), ``sqrt(1 / (4 pi s^2) + 1 / (4 pi l^2) - 1 / (pi (s^2 + l^2)))``."""
    var = 1 / (4 * np.pi * small ** 2)
    if large > 0:
        var += 1 / (4 * np.pi * large ** 2) - 1 / (np.pi * (small ** 2 + large ** 2))
    return float(np.sqrt(var))


def background_excess(frames: torch.Tensor, sigmas: tuple[float, float], clip: float, grow: float) -> torch.Tensor:
    """Band-passed light between the sources of a (N, H, W) batch, in units of the band-passed noise
    (steps 1 and 2 of the module docstring); 0 where sources or masked pixels cover most of the window.
    The level and noise come from the unmasked pixels; a tile whose MAD is 0 (quantised, mostly constant)
    falls back to its standard deviation."""
    frames = frames.float()
    level, noise = level_noise(frames)
    if bool((noise <= 0).any()):
        spread = torch.nan_to_num(frames.flatten(1), nan=0.0).std(dim=1)[:, None, None]
        noise = torch.where(noise > 0, noise, spread)
    noise = noise.nan_to_num(0.0).clamp_min(1e-12)
    frames, nan = fill_masked(frames)
    z = (frames - level.nan_to_num(0.0)) / noise
    source = (z.abs() > clip).float()       # stars and tracks, and dead columns and cold pixels
    if grow > 0:
        source = (gaussian_blur(source, grow) > 0.05).float()
    keep = (1.0 - source).masked_fill(nan, 0.0)
    both = torch.cat([z * keep, keep])       # light and mask blurred together: one call per width
    small, large = sigmas
    light, cover = gaussian_blur(both, small).chunk(2)
    band = light / cover.clamp_min(1e-3)
    if large > 0:
        light_l, cover_l = gaussian_blur(both, large).chunk(2)
        band = band - light_l / cover_l.clamp_min(1e-3)
    return band / band_noise(small, large) * (cover > 0.5)


#: 4-connectivity within a tile, none across tiles: one ndimage.label call labels a whole batch
_IN_TILE = np.zeros((3, 3, 3), dtype=bool)
_IN_TILE[1] = ndimage.generate_binary_structure(2, 1)


def largest_region(excess: torch.Tensor, threshold: float) -> np.ndarray:
    """Pixels in the largest 4-connected region of each map of a (N, H, W) batch above ``threshold``."""
    labels, n = ndimage.label((excess > threshold).cpu().numpy(), structure=_IN_TILE)
    if n == 0:
        return np.zeros(len(excess))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0                                  # the background
    return sizes[labels].reshape(len(excess), -1).max(axis=1).astype(np.float64)


def diffuse_area(frames: torch.Tensor, sigmas: tuple[float, float], clip: float, grow: float,
                 threshold: float) -> np.ndarray:
    """The ``diffuse`` score of each tile of a (N, H, W) batch on its raw intensity scale."""
    return largest_region(background_excess(frames, sigmas, clip, grow), threshold)
