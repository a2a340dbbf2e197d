"""HDF5 shard files: append rows to resizable datasets (flat memory), read them back in batches."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import h5py
import numpy as np


class ShardWriter:
    """Append-only writer of named per-row arrays to an open HDF5 file (chunked, resizable datasets)."""

    def __init__(self, f: h5py.File, chunk_rows: int = 64):
        self.f, self.chunk_rows, self.n = f, chunk_rows, 0

    def append(self, **columns: np.ndarray) -> None:
        rows = len(next(iter(columns.values())))
        for name, values in columns.items():
            values = np.asarray(values)
            if name not in self.f:
                self.f.create_dataset(name, shape=(0, *values.shape[1:]), maxshape=(None, *values.shape[1:]),
                                      dtype=values.dtype, chunks=(self.chunk_rows, *values.shape[1:]))
            ds = self.f[name]
            ds.resize(self.n + rows, axis=0)
            ds[self.n:self.n + rows] = values
        self.n += rows

    def ensure(self, **empty: tuple[tuple[int, ...], str]) -> None:
        """Create still-missing datasets with zero rows (an empty shard still has every dataset)."""
        for name, (shape, dtype) in empty.items():
            if name not in self.f:
                self.f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype)


def shard_length(path: str | Path, name: str) -> int:
    with h5py.File(path, "r") as f:
        return int(f[name].shape[0])


def iter_batches(path: str | Path, names: list[str], batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Yield dicts of ``batch`` consecutive rows of the named datasets; memory is one batch."""
    with h5py.File(path, "r") as f:
        n = f[names[0]].shape[0]
        for start in range(0, n, batch):
            yield {name: f[name][start:start + batch] for name in names}
