"""Chunked reads of the manifest for the gather steps: it has one row per tile, each repeating its frame's
header and WCS, so these keep only the columns and rows a step needs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

FRAME = ["source", "key", "frame"]
_TEXT = {"source": str, "key": str, "wcs": str, "wcs_problem": str, "header": str}


def _chunks(path: str | Path, columns: list[str], chunk_rows: int):
    cols = list(dict.fromkeys([*columns, "status"]))
    for c in pd.read_csv(path, usecols=cols, chunksize=chunk_rows, keep_default_na=False, na_values=[""],
                         dtype={k: v for k, v in _TEXT.items() if k in cols}):
        yield c[c["status"] == "ok"][columns]


def read_frames(path: str | Path, chunk_rows: int = 200_000) -> pd.DataFrame:
    """One row per usable frame: ``source, key, frame, height, width, wcs, wcs_problem`` ('' = none)."""
    cols = [*FRAME, "height", "width", "wcs", "wcs_problem"]
    frames = pd.concat([c.drop_duplicates(FRAME) for c in _chunks(path, cols, chunk_rows)], ignore_index=True)
    frames = frames.drop_duplicates(FRAME, ignore_index=True)
    frames[["wcs", "wcs_problem"]] = frames[["wcs", "wcs_problem"]].fillna("")
    return frames


def read_tiles(path: str | Path, columns: list[str], match: pd.DataFrame, chunk_rows: int = 200_000) -> pd.DataFrame:
    """The usable tile rows (``columns``) whose values in ``match``'s columns equal one of its rows."""
    keys = match.drop_duplicates()
    parts = [c.merge(keys, on=list(keys.columns)) for c in _chunks(path, list(dict.fromkeys([*columns, *keys.columns])),
                                                                   chunk_rows)]
    return pd.concat(parts, ignore_index=True)
