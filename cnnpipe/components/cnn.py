"""The CNN's component: its uncertainty about the transform (self-supervised) or class (supervised)."""
from __future__ import annotations

import torch

from ..models.cnn import cnn_score
from .batch import ShardBatch


def cnn(b: ShardBatch) -> torch.Tensor:
    return cnn_score(b.cnn, b.x, b.cnn_meta)
