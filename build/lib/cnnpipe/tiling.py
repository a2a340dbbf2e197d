"""Cut frames into fixed-size model inputs: overlapping tiles for large frames, NaN padding for small ones."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis so tiles of ``tile`` pixels overlap by at least ``overlap`` and the
    last tile ends exactly at the edge (no pixel is left out)."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def tiles(image: np.ndarray, tile: int, overlap: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(y0, x0, tile_image)``; frames smaller than ``tile`` are padded with NaN (masked)."""
    h, w = image.shape
    if h < tile or w < tile:
        padded = np.full((max(h, tile), max(w, tile)), np.nan, dtype=np.float32)
        padded[:h, :w] = image
        image, h, w = padded, *padded.shape
    for y0 in tile_starts(h, tile, overlap):
        for x0 in tile_starts(w, tile, overlap):
            yield y0, x0, image[y0:y0 + tile, x0:x0 + tile]


def tiles_per_frame(height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles :func:`tiles` cuts from a ``height`` x ``width`` frame."""
    return len(tile_starts(max(height, tile), tile, overlap)) * len(tile_starts(max(width, tile), tile, overlap))
