"""HDF5 reader: a dataset of shape (N,H,W) or (N,C,H,W) (named in config, default the first 3-D/4-D one),
split into ``n_shards`` frame ranges and read in chunks; a frame's population is its dataset."""
from __future__ import annotations

import math
import os
from typing import Iterator

import h5py
import numpy as np

from ..limits import (Limits, bytes_problem, frame_problem, frames_per_read, hdf5_external_links, hdf5_link_problem,
                      hdf5_storage_problem, regular_file_problem)
from .base import Block, Problem, Record, Unit, float_frames, one_line

NAME = "hdf5"
SUFFIXES = (".h5", ".hdf5", ".hdf")


def find_hdf5_dataset(f: h5py.File, name: str | None) -> h5py.Dataset:
    """The named dataset, or the first 3-D/4-D dataset in the file (in h5py's visit order)."""
    if name:
        if name not in f:
            raise ValueError(f"no dataset '{name}'")
        obj = f[name]
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"'{name}' is a group, not a dataset")
        return obj
    found: list[h5py.Dataset] = []
    f.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4)
                 and not found else None)
    if not found:
        shapes = []
        f.visititems(lambda n, o: shapes.append(f"{n}{o.shape}") if isinstance(o, h5py.Dataset) else None)
        links = hdf5_external_links(f)
        raise ValueError("no 3-D (N,H,W) or 4-D (N,C,H,W) dataset" + (f"; found {', '.join(shapes[:3])}"
                                                                     if shapes else "")
                         + (f"; external links are not followed ({', '.join(links[:3])})" if links else ""))
    return found[0]


def check_hdf5_dataset(ds: h5py.Dataset) -> None:
    if ds.ndim not in (3, 4):
        raise ValueError(f"dataset '{ds.name}' has rank {ds.ndim} {ds.shape}, need (N,H,W) or (N,C,H,W)")
    if not (np.issubdtype(ds.dtype, np.number) or ds.dtype == np.bool_) or np.issubdtype(ds.dtype, np.complexfloating):
        raise ValueError(f"dataset '{ds.name}' has dtype {ds.dtype}, need integer or float pixels")


def plan(path: str, n_shards: int, options: dict) -> list[Unit]:
    """``n_shards`` frame ranges of the frames dataset (``options["hdf5_dataset"]``, None = the first 3-D/4-D).
    A dataset outside ``options["limits"]`` or whose data lives in another file is one quarantined unit."""
    name, limits = options.get("hdf5_dataset"), options.get("limits") or Limits()
    try:
        if why := regular_file_problem(path) or (name and _link(path, name)):
            raise ValueError(why)
        with h5py.File(path, "r") as f:
            ds = find_hdf5_dataset(f, name)
            check_hdf5_dataset(ds)
            if why := hdf5_storage_problem(ds) or _limits(ds, path, limits):
                raise ValueError(why)
            n, key = ds.shape[0], ds.name
    except Exception as exc:  # noqa: BLE001 - any unreadable file is quarantined, not fatal
        return [Unit(path, "bad", reason=one_line(exc))]
    step = max(1, math.ceil(n / n_shards))
    units = [Unit(path, NAME, key, s, min(n, s + step)) for s in range(0, n, step)]
    if n == 0:
        units.append(Unit(path, "bad", key, reason="dataset holds no frames"))
    return units


def read(unit: Unit, chunk_frames: int, options: dict) -> Iterator[Record]:
    yield from read_hdf5(unit, chunk_frames, options.get("hdf5_labels"), options.get("limits") or Limits())


def _link(path: str, name: str) -> str | None:
    with h5py.File(path, "r") as f:
        return hdf5_link_problem(f, name)


def _limits(ds: h5py.Dataset, path: str, limits: Limits) -> str | None:
    h, w = ds.shape[-2:]
    return (frame_problem(h, w, limits, f"dataset '{ds.name}'")
            or bytes_problem(ds.nbytes, os.path.getsize(path), limits, f"dataset '{ds.name}'"))


def population(source: str, key: str) -> str:
    return f"{source}:{key}"


def read_hdf5(unit: Unit, chunk_frames: int = 64, labels_name: str | None = None,
              limits: Limits = Limits()) -> Iterator[Record]:
    """Frames ``unit.start:unit.stop`` of an HDF5 dataset, read in chunks of at most ``chunk_frames`` frames
    and ``limits.max_read_bytes`` bytes; (N,C,H,W) is averaged over C."""
    try:
        with h5py.File(unit.source, "r") as f:
            ds = f[unit.key]
            if labels_name and hdf5_link_problem(f, labels_name):  # missing, or another file's: no labels
                labels_name = None
            labels = f[labels_name] if labels_name else None
            if labels is not None and (not isinstance(labels, h5py.Dataset) or hdf5_storage_problem(labels)):
                labels = None
            if labels is not None and (labels.ndim != 1 or labels.shape[0] != ds.shape[0]):
                labels = None
            attrs = {k: (v.decode(errors="replace") if isinstance(v, bytes) else v)
                     for k, v in ds.attrs.items() if np.ndim(v) == 0}
            step = frames_per_read(int(np.prod(ds.shape[1:])), chunk_frames, limits)
            for start in range(unit.start, unit.stop, step):
                stop = min(unit.stop, start + step)
                block = float_frames(ds[start:stop])
                if block.ndim == 4:
                    block = block.mean(axis=1)
                lab = np.asarray(labels[start:stop], dtype=np.int64) if labels is not None else np.full(stop - start, -1)
                yield Block(unit.source, unit.key, start, block, lab, attrs)
    except Exception as exc:  # noqa: BLE001
        yield Problem(unit.source, unit.key, unit.start, f"unreadable HDF5: {one_line(exc)}")
