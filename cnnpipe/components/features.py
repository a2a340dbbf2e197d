"""Components read off the feature maps and the ingest measurements, no model needed."""
from __future__ import annotations

import numpy as np
import torch

from ..diffuse import diffuse_area
from ..filters import level_noise
from .batch import ShardBatch
from .vae import top_mean


def moments(x: torch.Tensor) -> torch.Tensor:
    """Whole-tile statistics of (N, C, H, W) feature maps, (N, 8): the intensity's mean, spread, median,
    90th and 99th percentiles and bright fraction (> 0.5), the Sobel magnitude's mean and 99th percentile.
    What a frame holds overall (how many tracks, how much sky, how flat): a pile-up, a flat field or a frame
    from another instrument differs here while every local measure looks ordinary."""
    i, s = x[:, 0].float().flatten(1), x[:, 1].float().flatten(1)
    q = torch.quantile(i, torch.tensor([0.5, 0.9, 0.99], device=i.device), dim=1)
    return torch.stack([i.mean(1), i.std(1), *q, (i > 0.5).float().mean(1), s.mean(1),
                        torch.quantile(s, 0.99, dim=1)], dim=1)


def masked(b: ShardBatch) -> torch.Tensor:
    return 1.0 - b.valid.float().mean(dim=(1, 2))


def sobel_peak(b: ShardBatch) -> torch.Tensor:
    return top_mean(b.x[:, 1].float(), b.mask, 0.0)


def sharpness(b: ShardBatch) -> np.ndarray:
    return b.stats["sharpness"]


def coldness(b: ShardBatch) -> np.ndarray:
    return b.stats["coldness"]


def occupancy(b: ShardBatch) -> torch.Tensor:
    """Fraction of the tile's pixels above its median by more than ``score.occupancy_sigma`` robust noise
    units (1.4826 x the median absolute deviation; masked pixels left out): how much signal the frame
    holds, a detector's occupancy (a pile-up, a shower) or a field's crowding.

    The median and the MAD are those of :func:`cnnpipe.filters.level_noise`, from a sample of the pixels."""
    f = b.frames.float().flatten(1)
    masked = bool(torch.isnan(f).any())
    level, noise = level_noise(b.frames)
    med, noise = level.flatten(1), noise.flatten(1)
    above = (f > med + b.settings.occupancy_sigma * noise.clamp_min(1e-12)).float().sum(dim=1)  # NaN: False
    return above / (torch.isfinite(f).float().sum(dim=1).clamp_min(1.0) if masked else f.shape[1])


def diffuse(b: ShardBatch) -> np.ndarray:
    s = b.settings
    return diffuse_area(b.linear_frames(), tuple(s.diffuse_sigmas), s.diffuse_clip, s.diffuse_grow,
                        s.diffuse_threshold)


def background(b: ShardBatch) -> torch.Tensor:
    return b.raw_level_noise()[0]


def noise(b: ShardBatch) -> torch.Tensor:
    return b.raw_level_noise()[1]
