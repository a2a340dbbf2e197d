"""Human labels (``config/labels.csv``: ``source,key,index,label``), read strictly but never with a traceback.

- a row repeated with the same label is used once (a warning says which);
- the same frame labelled both ``interesting`` and ``boring`` is an error naming both lines;
- an empty file, missing columns, an index that is not an integer or an unknown label stop with one line
  naming the file, the line and what to write instead.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .errors import UserError

log = logging.getLogger(__name__)

COLUMNS = ["source", "key", "index", "label"]
LABELS = ("interesting", "boring")


def read_labels(path: str | Path | None) -> pd.DataFrame:
    """``source,key,index,label`` rows, one per frame; a missing file (or no path) = no labels."""
    if not path or not Path(path).exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: write a header line '{','.join(COLUMNS)}' (or delete the file)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV ({' '.join(str(exc).split())})") from None
    if sorted(df.columns) != sorted(COLUMNS):
        raise UserError(f"{path}: need the columns {','.join(COLUMNS)}, found {','.join(map(str, df.columns))}")
    line = pd.Series(range(2, len(df) + 2), index=df.index)  # line numbers as an editor shows them
    index = pd.to_numeric(df["index"].str.strip(), errors="coerce")
    bad = index.isna() | (index != index.round())
    if bad.any():
        i = bad.idxmax()
        raise UserError(f"{path} line {line[i]}: index {df['index'][i]!r} is not an integer frame number")
    df["index"] = index.astype("int64")
    df["label"] = df["label"].str.strip().str.lower()
    bad = ~df["label"].isin(LABELS)
    if bad.any():
        i = bad.idxmax()
        raise UserError(f"{path} line {line[i]}: label {df['label'][i]!r} is not 'interesting' or 'boring'")
    ids = ["source", "key", "index"]
    clash = df.groupby(ids)["label"].transform("nunique") > 1
    if clash.any():
        rows = df[clash]
        first = rows.iloc[0]
        same = rows[(rows.source == first.source) & (rows.key == first.key) & (rows["index"] == first["index"])]
        where = ", ".join(f"line {line[i]} {lab!r}" for i, lab in same["label"].items())
        raise UserError(f"{path}: {first.source} [{first.key}] {first['index']} is labelled both ways ({where}); "
                        f"keep one ({clash.sum()} conflicting rows in all)")
    dup = df.duplicated(ids)
    if dup.any():
        log.warning("%s: %d repeated rows used once (lines %s)", path, dup.sum(),
                    ", ".join(str(line[i]) for i in df.index[dup][:10]))
    return df[~dup][COLUMNS].reset_index(drop=True)
