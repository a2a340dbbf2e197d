"""The one place CSV tables are read and written: the manifest, the ranked lists, the metrics.

One NA rule everywhere: only an empty cell is missing. A source or key spelled ``NA``, ``null`` or ``nan``
stays text (it is a file or dataset name), and ``source``, ``key`` and ``reason`` are always text (HDU
numbers and HDF5 dataset paths share the ``key`` column).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .csvcells import neutralise, restore

TEXT_COLUMNS = {"source": str, "key": str, "reason": str, "population": str, "wcs": str, "wcs_problem": str,
                "world_axes": str}


def read_table(path: str | Path, usecols: list[str] | None = None) -> pd.DataFrame:
    """A cnnpipe CSV (manifest, anomalies, latent map, metrics) with the one NA rule above."""
    return restore(pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=TEXT_COLUMNS, usecols=usecols))


def read_manifest(path: str | Path, usecols: list[str] | None = None) -> pd.DataFrame:
    """The merged (or one shard's) manifest; ``usecols`` reads only those columns."""
    return read_table(path, usecols)


def _ok_chunks(path: str | Path, columns: list[str], chunk_rows: int):
    """The usable (``status=ok``) manifest rows, ``columns`` only, ``chunk_rows`` rows at a time."""
    cols = list(dict.fromkeys([*columns, "status"]))
    for c in pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=TEXT_COLUMNS, usecols=cols,
                         chunksize=chunk_rows):
        yield c[c["status"] == "ok"][columns]


def read_frames(path: str | Path, chunk_rows: int = 200_000) -> pd.DataFrame:
    """One row per usable frame of a manifest: ``source, key, frame, height, width, scale, wcs, wcs_problem``
    ('' = none; ``scale`` 1 in a manifest written before it existed). Read in chunks: the manifest has a row
    per tile, each repeating its frame's header and WCS."""
    frame = ["source", "key", "frame"]
    has_scale = "scale" in pd.read_csv(path, nrows=0).columns
    cols = [*frame, "height", "width", *(["scale"] if has_scale else []), "wcs", "wcs_problem"]
    frames = pd.concat([c.drop_duplicates(frame) for c in _ok_chunks(path, cols, chunk_rows)], ignore_index=True)
    frames = frames.drop_duplicates(frame, ignore_index=True)
    if not has_scale:
        frames.insert(5, "scale", 1.0)
    frames[["wcs", "wcs_problem"]] = frames[["wcs", "wcs_problem"]].fillna("")
    return frames


def read_tiles(path: str | Path, columns: list[str], match: pd.DataFrame, chunk_rows: int = 200_000) -> pd.DataFrame:
    """The usable manifest rows (``columns``) whose values in ``match``'s columns equal one of its rows;
    read in chunks, so only those rows are ever held."""
    keys = match.drop_duplicates()
    cols = list(dict.fromkeys([*columns, *keys.columns]))
    return pd.concat([c.merge(keys, on=list(keys.columns)) for c in _ok_chunks(path, cols, chunk_rows)],
                     ignore_index=True)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically (temp name, then rename), text cells safe for spreadsheets (csvcells)."""
    with atomic_path(path) as tmp:
        neutralise(df).to_csv(tmp, index=False)
