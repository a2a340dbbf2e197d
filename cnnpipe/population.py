"""Which population a frame belongs to: frames are compared only with others of their kind."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import UserError


def population(df: pd.DataFrame) -> np.ndarray:
    """The population of every row of a manifest-derived table: the ``population`` column ingestion wrote
    (each reader says what its frames are compared with: the HDF5 dataset, the folder of a FITS file).

    Component scores are normalised within a population, so a run mixing, say, sky frames and detector
    events ranks each against its own kind instead of letting one kind's larger errors swamp the other.
    """
    if "population" not in df:
        raise UserError("the manifest has no 'population' column: it was written by an older cnnpipe; "
                        "rerun ingest")
    return df["population"].fillna("").astype(str).to_numpy()  # a FITS file in the working folder: ""


def pooled_populations(anomalies: pd.DataFrame, manifest: pd.DataFrame) -> list[tuple[str, int]]:
    """(population, rows) of the populations too small to be normalised alone (scored against the run)."""
    if "pooled" not in anomalies:
        return []
    ids = ["source", "key", "index"]
    rows = anomalies.loc[anomalies["pooled"].astype(str).str.lower() == "true", ids]
    pops = rows.merge(manifest[[*ids, "population"]], on=ids, how="left")
    return [(str(p), int(n)) for p, n in pd.Series(population(pops)).value_counts().sort_index().items()]
