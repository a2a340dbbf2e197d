"""Which population a frame belongs to: frames are compared only with others of their kind."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd


def population(df: pd.DataFrame) -> np.ndarray:
    """The population a frame belongs to: its HDF5 dataset, or the folder of its FITS file.

    Component scores are normalised within a population, so a run mixing, say, sky frames and detector
    events ranks each against its own kind instead of letting one kind's larger errors swamp the other.
    """
    is_h5 = df.key.str.startswith("/")
    return np.where(is_h5, df.source + ":" + df.key, df.source.map(os.path.dirname))
