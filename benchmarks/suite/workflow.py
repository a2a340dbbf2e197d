"""cnnpipe through its real workflow on one labelled set: config, ``snakemake --cores 2``, join with truth.

The suite's config override (documented in SUITE.md): two shards (one for the small digit sets), the tile side equal to the frame side
(so frames are neither tiled nor padded), the set's symmetries, and shorter training than the defaults
(``EPOCHS``; the defaults are 12 CNN / 20 VAE epochs with early stopping) to keep the whole suite within
half an hour on two cores. Only the ranking is built (target ``results/anomalies_by_frame.csv``), not
the HTML report.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
TARGET = "results/anomalies_by_frame.csv"
EPOCHS = {"full": {"cnn": 4, "vae": 8}, "quick": {"cnn": 2, "vae": 3}}
ISOTROPIC = {"hflip": True, "vflip": True, "rot90": True, "translate": 0}
#: digits: no mirror, no rotation (a rotated 6 is a 9); small shifts are a symmetry of handwriting
DIGITS = {"hflip": False, "vflip": False, "rot90": False, "translate": 4}


#: score.weights merged over cnnpipe's defaults in every run (``--weights``; empty = the defaults)
WEIGHTS: dict[str, float] = {}
#: ingest keys merged over the suite's (``--tile``, ``--small-frames``; empty = tile side = frame side)
INGEST: dict = {}


def config(inputs: list[str], seed: int, side: int, augment: dict, quick: bool, shards: int = 2) -> dict:
    e = EPOCHS["quick" if quick else "full"]
    ingest = {"n_shards": shards, "tile_size": side, **INGEST}
    cfg = {"inputs": inputs, "seed": seed, "ingest": ingest, "augment": augment,
           "train": {"cnn": {"epochs": e["cnn"]}, "vae": {"epochs": e["vae"]}}}
    return {**cfg, "score": {"weights": dict(WEIGHTS)}} if WEIGHTS else cfg


def run(workdir: Path, cfg: dict, timeout: int = 1800) -> tuple[bool, float, str]:
    """``snakemake --cores 2`` for ``TARGET`` in ``workdir``; (succeeded, wall seconds, output tail)."""
    (workdir / "suite.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "suite.yaml"), "--cores", "2", "--workflow-profile", "none", TARGET]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    tail = (out.stdout + out.stderr)[-3000:]
    return out.returncode == 0, time.perf_counter() - t0, tail


def joined(workdir: Path, truth: pd.DataFrame) -> pd.DataFrame:
    """The truth table with cnnpipe's per-frame score and component columns (same row order)."""
    frames = pd.read_csv(workdir / TARGET, dtype={"key": str})
    t = truth.astype({"key": str})
    out = t.merge(frames, on=["source", "key", "frame"], how="left", validate="one_to_one")
    missing = out.score.isna().sum()
    if missing:
        raise RuntimeError(f"{workdir}: {missing} truth frames have no cnnpipe score")
    return out
