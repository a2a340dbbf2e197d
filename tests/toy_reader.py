"""A toy input format, as a new contributor would add one (Zarr, say): NumPy ``.npy`` stacks (N, H, W).
This module plus one entry of cnnpipe.readers.FORMATS (tests/test_extension.py adds it)."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from cnnpipe.readers.base import Block, Problem, Record, Unit, float_frames, one_line

NAME = "npy"
SUFFIXES = (".npy",)


def plan(path: str, n_shards: int, options: dict) -> list[Unit]:
    return [Unit(path, NAME, key="stack")]


def read(unit: Unit, chunk_frames: int, options: dict) -> Iterator[Record]:
    try:
        stack = np.load(unit.source, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - quarantined, not fatal
        yield Problem(unit.source, unit.key, -1, f"unreadable .npy: {one_line(exc)}")
        return
    for start in range(0, len(stack), chunk_frames):
        block = float_frames(np.array(stack[start:start + chunk_frames]))  # a copy: the mmap is read-only
        yield Block(unit.source, unit.key, start, block, np.full(len(block), -1), {})


def population(source: str, key: str) -> str:
    return f"npy:{os.path.dirname(source)}"
