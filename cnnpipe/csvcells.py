"""Text cells of the CSVs cnnpipe writes, made safe to open in a spreadsheet, and read back unchanged.

A cell starting with ``= + - @`` (or tab / carriage return) is a formula to Excel and LibreOffice: a file
named ``=HYPERLINK(...).fits`` would run in the reader's spreadsheet (CSV injection). Such cells get a
leading ``'``, the spreadsheet convention for "this is text"; cells that already start with ``'`` get one
more, so :func:`restore` (drop one leading ``'``) gives back exactly what was written.
"""
from __future__ import annotations

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def _text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype)]


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells cannot be taken for formulas."""
    out = df.copy()
    for c in _text_columns(out):
        out[c] = out[c].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(TRIGGERS) else v)
    return out


def restore(df: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`neutralise` in place (on a frame read back from such a CSV) and return it."""
    for c in _text_columns(df):
        df[c] = df[c].map(lambda v: v[1:] if isinstance(v, str) and v.startswith("'") else v)
    return df
