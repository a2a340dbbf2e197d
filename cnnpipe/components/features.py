"""Components read off the feature maps and the ingest measurements, no model needed."""
from __future__ import annotations

import numpy as np
import torch

from .batch import ShardBatch
from .vae import top_mean


def masked(b: ShardBatch) -> torch.Tensor:
    return 1.0 - b.valid.float().mean(dim=(1, 2))


def sobel_peak(b: ShardBatch) -> torch.Tensor:
    return top_mean(b.x[:, 1].float(), b.mask, 0.0)


def sharpness(b: ShardBatch) -> np.ndarray:
    return b.stats["sharpness"]


def coldness(b: ShardBatch) -> np.ndarray:
    return b.stats["coldness"]
