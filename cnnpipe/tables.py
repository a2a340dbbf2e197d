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

TEXT_COLUMNS = {"source": str, "key": str, "reason": str, "population": str}


def read_table(path: str | Path, usecols: list[str] | None = None) -> pd.DataFrame:
    """A cnnpipe CSV (manifest, anomalies, latent map, metrics) with the one NA rule above."""
    return restore(pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=TEXT_COLUMNS, usecols=usecols))


def read_manifest(path: str | Path, usecols: list[str] | None = None) -> pd.DataFrame:
    """The merged (or one shard's) manifest; ``usecols`` reads only those columns."""
    return read_table(path, usecols)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically (temp name, then rename), text cells safe for spreadsheets (csvcells)."""
    with atomic_path(path) as tmp:
        neutralise(df).to_csv(tmp, index=False)
