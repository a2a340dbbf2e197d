"""Shape components: an unusual corner (against the population's corner reference), a straight line."""
from __future__ import annotations

import torch

from ..lines import line_strength
from .batch import ShardBatch


def corner(b: ShardBatch) -> torch.Tensor:
    return b.reference.ratio(b.frames, b.codes).amax(dim=(1, 2))


def line(b: ShardBatch) -> torch.Tensor:
    return line_strength(b.x[:, 0].float(), b.line_angles)
