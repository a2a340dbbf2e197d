"""Writing a labelled set to real files (a FITS folder or one HDF5 file) and reading it back.

A set is ``frames`` (N, H, W) float32 plus a truth table with one row per frame: ``frame`` (0..N-1),
``label`` (1 = anomaly), ``cls`` ('normal' or the anomaly class) and ``detail`` (JSON of the anomaly's
parameters). On disk the truth table gains the ids cnnpipe uses for a frame: ``source`` (the path as
given to cnnpipe), ``key`` (FITS HDU index / HDF5 dataset path) and ``frame`` (index within it).
Labels live only in ``truth.csv``, never in the data files (cnnpipe would train on HDF5 labels).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd
from astropy.io import fits

TRUTH_COLUMNS = ["source", "key", "frame", "label", "cls", "detail"]


def write_fits_folder(root: Path, rel: str, frames: np.ndarray, truth: pd.DataFrame) -> pd.DataFrame:
    """One FITS file per frame (primary HDU) under ``root/rel``; returns the truth table with file ids."""
    folder = root / rel
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for i, img in enumerate(frames):
        name = f"{rel}/frame-{i:05d}.fits"
        hdr = fits.Header()
        hdr["ORIGIN"] = "cnnpipe detection suite"
        fits.PrimaryHDU(img.astype(np.float32), header=hdr).writeto(root / name, overwrite=True)
        sources.append(name)
    out = truth.copy()
    out["source"], out["key"] = [sources[i] for i in truth.frame], "0"
    out["frame"] = 0
    return out[TRUTH_COLUMNS]


def write_hdf5(root: Path, rel: str, frames: np.ndarray, truth: pd.DataFrame, dataset: str = "events") -> pd.DataFrame:
    """All frames as dataset ``/<dataset>`` of ``root/rel`` (no labels inside); returns the truth table."""
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / rel, "w") as f:
        f.create_dataset(dataset, data=frames.astype(np.float32), chunks=(min(64, len(frames)), *frames.shape[1:]))
    out = truth.copy()
    out["source"], out["key"] = rel, f"/{dataset}"
    return out[TRUTH_COLUMNS]


def read_frames(root: Path, truth: pd.DataFrame) -> np.ndarray:
    """The frames a truth table names, in its row order, read back from the files (for the baselines)."""
    out = []
    by_file: dict[str, np.ndarray] = {}
    for src, key, idx in zip(truth.source, truth.key.astype(str), truth.frame):
        path = root / src
        if path.suffix in (".h5", ".hdf5"):
            if src not in by_file:
                with h5py.File(path) as f:
                    by_file[src] = f[key][:]
            out.append(by_file[src][idx])
        else:
            out.append(fits.getdata(path, ext=int(key)).astype(np.float32))
    return np.stack(out).astype(np.float32)


def plan_anomalies(n: int, fraction: float, classes: list[str], rng: np.random.Generator) -> list[str]:
    """Class of each of ``n`` frames: ``round(n * fraction)`` (at least one per class) anomalies, the
    classes dealt in turn, placed at random; every other frame 'normal'."""
    k = max(len(classes), int(round(n * fraction)))
    cls = ["normal"] * n
    for j, i in enumerate(rng.choice(n, size=k, replace=False)):
        cls[i] = classes[j % len(classes)]
    return cls


def dihedral(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random one of the 8 rotations/mirrors (sky and detector frames have no preferred orientation)."""
    img = np.rot90(img, int(rng.integers(4)))
    return np.ascontiguousarray(img[:, ::-1] if rng.random() < 0.5 else img)


def render_set(n: int, fraction: float, classes: list[str], seed: int, size: int,
               event: Callable[[np.random.Generator, str, int], tuple[np.ndarray, dict]]
               ) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` frames (float32) drawn one at a time by ``event(rng, cls, size)`` and their truth table
    (frame, label, cls, detail): the harness of a generator whose frames need nothing shared between them."""
    rng = np.random.default_rng(seed)
    planned = plan_anomalies(n, fraction, classes, rng)
    frames, details = np.empty((n, size, size), np.float32), []
    for i, cls in enumerate(planned):
        img, detail = event(rng, cls, size)
        frames[i] = img.astype(np.float32)
        details.append(json.dumps(detail))
    truth = pd.DataFrame({"frame": np.arange(n), "label": [int(c != "normal") for c in planned], "cls": planned,
                          "detail": details})
    return frames, truth
