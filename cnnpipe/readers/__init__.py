"""Readers: resolve the configured inputs, split them into units of work, yield frames.

One module per input format, listed in :data:`FORMATS`; each owns its ``NAME``, its file-name
``SUFFIXES``, ``plan(path, n_shards, options)`` (the units one file is read in), ``read(unit, chunk_frames,
options)`` (its frames, as :class:`Block` s, or :class:`Problem` s) and ``population(source, key)`` (which
frames it is compared with; the manifest stores it). ``options`` are the ingest settings a format may use
(``hdf5_dataset``, ``hdf5_labels``). Adding a format (Zarr, say) is one module and one entry of FORMATS.

Every problem with an input becomes a :class:`Problem` (a one-line reason) instead of an exception, so one
bad file never stops a run. Frames come out as float32 arrays with NaN marking masked pixels.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Iterator

from .. import discover
from .base import Block, Problem, Record, Unit  # noqa: F401  (the readers' vocabulary)

#: the reader modules, in the order their suffixes are tried
FORMATS: list[str] = ["cnnpipe.readers.fits", "cnnpipe.readers.hdf5"]


def formats() -> list[ModuleType]:
    return [importlib.import_module(name) for name in FORMATS]


def reader(name: str) -> ModuleType:
    """The reader module whose ``NAME`` is ``name``."""
    found = [m for m in formats() if m.NAME == name]
    if not found:
        raise ValueError(f"no reader for format {name!r}")
    return found[0]


def suffixes() -> tuple[str, ...]:
    return tuple(s for m in formats() for s in m.SUFFIXES)


def file_kind(path: str) -> str | None:
    """The ``NAME`` of the first reader whose suffixes end ``path`` (case-insensitive), or None."""
    name = path.lower()
    return next((m.NAME for m in formats() if name.endswith(m.SUFFIXES)), None)


def _unknown() -> str:
    return f"unknown file type (expected {', '.join(suffixes())})"


def resolve_inputs(entries: list[str], exclude: tuple[str, ...] = (),
                   keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Expand files, folders (recursive) and globs into sorted ``(path, problem)`` pairs; problem '' = fine.
    ``exclude``/``keep``: the workflow's own output folders, never read (see :mod:`cnnpipe.discover`)."""
    return discover.resolve(entries, file_kind, exclude, keep, unknown=_unknown(),
                            empty=f"folder holds no {' or '.join(m.NAME.upper() for m in formats())} files")


def plan_units(paths: list[tuple[str, str]], n_shards: int, hdf5_dataset: str | None = None,
               **options) -> list[Unit]:
    """Split resolved inputs into units, each by its format's ``plan`` (one per FITS file, ``n_shards``
    frame ranges per HDF5 dataset); an input with a problem is one "bad" unit."""
    options = {"hdf5_dataset": hdf5_dataset, **options}
    units: list[Unit] = []
    for path, problem in paths:
        kind = file_kind(path) if not problem else None
        units += reader(kind).plan(path, n_shards, options) if kind else [Unit(path, "bad", reason=problem)]
    return units


def shard_units(units: list[Unit], shard: int, n_shards: int) -> list[Unit]:
    """The units ingest job ``shard`` reads: every ``n_shards``-th, so files spread evenly over shards."""
    return units[shard::n_shards]


def read_unit(unit: Unit, chunk_frames: int = 64, hdf5_labels: str | None = None, **options) -> Iterator[Record]:
    """Yield the frames (or problems) of one unit, reading at most ``chunk_frames`` frames (and at most
    ``options["limits"].max_read_bytes``) at a time."""
    if unit.kind == "bad":
        yield Problem(unit.source, unit.key, -1, unit.reason)
    else:
        yield from reader(unit.kind).read(unit, chunk_frames, {"hdf5_labels": hdf5_labels, **options})


def population(kind: str, source: str, key: str) -> str:
    """The population of a frame read by format ``kind`` (stored in the manifest)."""
    return reader(kind).population(source, key)
