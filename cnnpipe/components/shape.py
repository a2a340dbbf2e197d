"""Shape components: an unusual corner or edge direction (against the population's reference), a straight line."""
from __future__ import annotations

import torch

from ..lines import line_strength
from .batch import ShardBatch


def corner(b: ShardBatch) -> torch.Tensor:
    return b.reference.ratio(b.frames, b.codes).amax(dim=(1, 2))


def orientation(b: ShardBatch) -> torch.Tensor:
    return b.reference.misfit_ratio(b.linear_frames(), b.codes).amax(dim=(1, 2))


def patch_knn(b: ShardBatch) -> torch.Tensor:
    if b.reference.bank is None:
        return torch.zeros(len(b.frames), device=b.frames.device)
    return b.reference.bank.distance(b.frames, b.owners)


def line(b: ShardBatch) -> torch.Tensor:
    return line_strength(b.x[:, 0].float(), b.settings.line_angles, b.settings.line_clip,
                         b.settings.line_background, b.settings.line_local)
