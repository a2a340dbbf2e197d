"""Training data: which rows of the features shards a model trains and validates on, and a bounded-memory
stream of them.

``plan_data`` splits the rows into train/val by a hash of the frame id ``(source, key, frame)`` from the
manifest: every tile of a frame lands on the same side, and the split does not depend on shard layout.
``ShardStream`` streams the features shards (HDF5, written by ``preprocess``) in chunks through a shuffle
buffer of ``cfg.train.shuffle_buffer`` frames, so memory is bounded by the buffer, never by the data set.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import IterableDataset

from .errors import UserError
from .shards import shard_number
from .tables import read_manifest, read_table

MANIFEST_COLUMNS = ["source", "key", "index", "shard", "row", "status", "frame"]


@dataclass
class Part:
    """The rows of one features shard that a stream reads, with their class targets (-1 = none)."""
    path: str
    rows: np.ndarray      # sorted row numbers
    targets: np.ndarray   # same length


def frame_fraction(source: str, key: str, frame: int) -> float:
    """A stable number in [0, 1) from a frame id: rows with a value < val_fraction are validation."""
    h = hashlib.blake2b(f"{source}\0{key}\0{frame}".encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(h.digest(), "big") / 2.0 ** 64


def shard_rows(manifest: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The ok manifest rows stored in features shard ``path``, ordered by row; checks the count."""
    i = shard_number(path)
    rows = manifest[(manifest["shard"] == i) & (manifest["status"] == "ok")].sort_values("row")
    with h5py.File(path, "r") as f:
        n = f["features"].shape[0]
    if len(rows) != n or (n and not np.array_equal(rows["row"].to_numpy(), np.arange(n))):
        raise UserError(f"{path} has {n} rows but the manifest lists {len(rows)} ok rows for shard {i}; "
                        "rerun ingest/preprocess so they agree")
    return rows


def read_class_labels(path: str | Path) -> dict[tuple[str, str, int], object]:
    """``train.cnn.labels_csv`` as {(source, key, index): class}."""
    if not Path(path).is_file():
        raise UserError(f"train.cnn.labels_csv: {path} does not exist")
    lab = read_table(path)
    missing = {"source", "key", "index", "label"} - set(lab.columns)
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(sorted(missing))} (need source,key,index,label)")
    lab = lab.dropna(subset=["label"])  # an empty label: unlabelled
    return {(s, k, int(i)): v for s, k, i, v in zip(lab["source"], lab["key"], lab["index"], lab["label"])}


@dataclass
class DataPlan:
    train: list[Part]
    val: list[Part]
    classes: list            # class values (supervised), [] otherwise
    shape: tuple[int, ...]   # (C, H, W) of a features row


def plan_data(features: list[str], manifest_path: str | Path, val_fraction: float,
              labels_csv: str | None = None, use_labels: bool = False, rank: int = 0, world: int = 1) -> DataPlan:
    """Split every shard's rows into train/val by frame id and attach class targets when labelled.

    Reads only manifest columns and the per-row ``label`` datasets, never the features. With ``world`` > 1
    rank ``r`` keeps every ``world``-th row starting at ``r`` (disjoint subsets).
    """
    if not features:
        raise UserError("no features shards given")
    manifest = read_manifest(manifest_path, usecols=MANIFEST_COLUMNS)
    csv_labels = read_class_labels(labels_csv) if use_labels and labels_csv else None
    per_shard, raw_labels, shape = [], [], None
    for path in features:
        rows = shard_rows(manifest, path)
        with h5py.File(path, "r") as f:
            shape = shape or tuple(f["features"].shape[1:])
            if tuple(f["features"].shape[1:]) != shape:
                raise UserError(f"{path} has rows of shape {f['features'].shape[1:]}, other shards {shape}")
            labels = f["label"][:] if "label" in f else np.full(len(rows), -1)
        if csv_labels is not None:
            labels = [csv_labels.get((s, k, int(i)), None)
                      for s, k, i in zip(rows["source"], rows["key"], rows["index"])]
        elif not use_labels:
            labels = np.full(len(rows), -1)
        else:
            labels = [int(v) if v >= 0 else None for v in labels]
        val = np.array([frame_fraction(s, k, int(fr)) < val_fraction
                        for s, k, fr in zip(rows["source"], rows["key"], rows["frame"])], dtype=bool)
        per_shard.append((path, val))
        raw_labels.append(labels)
    if shape is None:
        raise UserError("the features shards are empty")
    classes = sorted({v for labels in raw_labels for v in labels if v is not None}) if use_labels else []
    index = {c: i for i, c in enumerate(classes)}
    train, valp = [], []
    for (path, val), labels in zip(per_shard, raw_labels):
        target = np.array([index.get(v, -1) if v is not None else -1 for v in labels], dtype=np.int64)
        keep = np.arange(len(val)) % world == rank
        if classes:
            keep &= target >= 0  # supervised: unlabelled rows are skipped
        for out, side in ((train, ~val), (valp, val)):
            rows = np.flatnonzero(keep & side)
            out.append(Part(str(path), rows, target[rows]))
    return DataPlan(train, valp, classes, shape)


class ShardStream(IterableDataset):
    """Batches ``{"x": (B,C,H,W), "valid": (B,H,W), "y": (B,)}`` streamed from HDF5 shards.

    With ``shuffle`` the shard order and the chunk order within a shard are permuted and rows pass through
    a buffer of ``buffer`` frames (each row entering swaps out a random buffered one), seeded per epoch by
    ``set_seed`` so the order is reproducible. Without shuffle, rows come in file order. Memory: the buffer
    plus one chunk.
    """

    def __init__(self, parts: list[Part], batch: int, buffer: int = 2048, shuffle: bool = True,
                 chunk: int = 256):
        super().__init__()
        self.parts = [p for p in parts if len(p.rows)]
        self.batch, self.buffer, self.shuffle, self.chunk = batch, max(1, buffer), shuffle, chunk
        self.seed = 0

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    @property
    def n_rows(self) -> int:
        return sum(len(p.rows) for p in self.parts)

    def __len__(self) -> int:
        return math.ceil(self.n_rows / self.batch)

    def _chunks(self, rng: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        order = rng.permutation(len(self.parts)) if rng is not None else range(len(self.parts))
        for p_i in order:
            part = self.parts[p_i]
            groups = np.split(part.rows, np.flatnonzero(np.diff(part.rows // self.chunk)) + 1)
            g_order = rng.permutation(len(groups)) if rng is not None else range(len(groups))
            with h5py.File(part.path, "r") as f:
                for g in g_order:
                    rows = groups[g]
                    lo, hi = int(rows[0]), int(rows[-1]) + 1
                    x = np.nan_to_num(f["features"][lo:hi][rows - lo])
                    v = f["valid"][lo:hi][rows - lo]
                    yield x, v, part.targets[np.searchsorted(part.rows, rows)]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng(self.seed) if self.shuffle else None
        cap = min(self.buffer, self.n_rows) if self.shuffle else 0
        buf: list[np.ndarray] | None = None
        out: list[np.ndarray] | None = None
        m = o = 0
        for x, v, y in self._chunks(rng):
            if buf is None:
                buf = [np.empty((cap, *a.shape[1:]), a.dtype) for a in (x, v, y)]
                out = [np.empty((self.batch, *a.shape[1:]), a.dtype) for a in (x, v, y)]
            for i in range(len(x)):
                if m < cap:                              # filling the buffer
                    for b, a in zip(buf, (x, v, y)):
                        b[m] = a[i]
                    m += 1
                    continue
                if cap:                                  # swap a random buffered row out, the new row in
                    j = int(rng.integers(cap))
                    for b, a, q in zip(buf, (x, v, y), out):
                        q[o] = b[j]
                        b[j] = a[i]
                else:
                    for a, q in zip((x, v, y), out):
                        q[o] = a[i]
                o += 1
                if o == self.batch:
                    yield self._tensors(out, o)
                    o = 0
        if buf is not None:
            for j in (rng.permutation(m) if m else []):  # drain the buffer in random order
                for b, q in zip(buf, out):
                    q[o] = b[j]
                o += 1
                if o == self.batch:
                    yield self._tensors(out, o)
                    o = 0
            if o:
                yield self._tensors(out, o)

    @staticmethod
    def _tensors(out: list[np.ndarray], n: int) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(a[:n].copy()) for k, a in zip(("x", "valid", "y"), out)}
