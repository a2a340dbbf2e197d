"""A toy score component, as a new contributor would add one: this module plus one row of the table
(tests/test_extension.py adds the row)."""
from __future__ import annotations

import torch

from cnnpipe.components.batch import ShardBatch


def brightest(b: ShardBatch) -> torch.Tensor:
    """The brightest unmasked intensity of each tile's feature map."""
    return b.x[:, 0].masked_fill(~b.mask, float("-inf")).amax(dim=(1, 2))
