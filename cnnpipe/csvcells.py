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


def _starting(column: pd.Series, prefixes: tuple[str, ...]) -> pd.Series:
    return column.map(lambda v: isinstance(v, str) and v.startswith(prefixes)).astype(bool)


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """``df``, or a copy whose text cells cannot be taken for formulas (other cells and dtypes untouched)."""
    out = df
    for c in _text_columns(df):
        hit = _starting(df[c], TRIGGERS)
        if hit.any():
            out = out.copy() if out is df else out
            out.loc[hit, c] = "'" + df.loc[hit, c]
    return out


def restore(df: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`neutralise` in place (on a frame read back from such a CSV) and return it."""
    for c in _text_columns(df):
        hit = _starting(df[c], ("'",))
        if hit.any():
            df.loc[hit, c] = df.loc[hit, c].str[1:]
    return df
