"""HDF5 shard files: append rows to resizable datasets (flat memory), read them back in batches."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .errors import UserError


class ShardWriter:
    """Append-only writer of named per-row arrays to an open HDF5 file (chunked, resizable datasets).

    Rows are buffered and written ``chunk_rows`` at a time (one resize + write per chunk instead of per
    append); memory stays bounded by one chunk. Call :meth:`close` before the file is closed.
    """

    def __init__(self, f: h5py.File, chunk_rows: int = 256):
        self.f, self.chunk_rows = f, chunk_rows
        self.n = 0  # rows appended so far, buffered ones included
        self._written = 0
        self._pending: dict[str, list[np.ndarray]] = {}

    def append(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self._pending.setdefault(name, []).append(np.asarray(values))
        self.n += len(next(iter(columns.values())))
        if self.n - self._written >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if self.n == self._written:
            return
        for name, parts in self._pending.items():
            values = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if name not in self.f:
                self.f.create_dataset(name, shape=(0, *values.shape[1:]), maxshape=(None, *values.shape[1:]),
                                      dtype=values.dtype, chunks=(min(self.chunk_rows, 64), *values.shape[1:]))
            ds = self.f[name]
            ds.resize(self.n, axis=0)
            ds[self._written:self.n] = values
        self._pending.clear()
        self._written = self.n

    def close(self, **empty: tuple[tuple[int, ...], str]) -> None:
        """Flush, then create still-missing datasets with zero rows (an empty shard has every dataset)."""
        self.flush()
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


def shard_number(path: str | Path) -> int:
    """Shard index from a features file name ``.../shard-{i}.h5``."""
    m = re.search(r"shard-(\d+)", Path(path).name)
    if not m:
        raise UserError(f"cannot tell the shard number of {path}: features files are named shard-<i>.h5")
    return int(m.group(1))
