"""Run the real Snakemake workflow on tiny data in a temporary folder (shared by the workflow tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from cnnpipe.components import default_weights

REPO = Path(__file__).resolve().parents[1]

#: A tiny but complete configuration: small demo, 2 shards, short training; the CNN's component is on (it is
#: off by default, and then the CNN is not trained), so the whole workflow runs.
TINY = {
    "inputs": ["results/demo/sky", "results/demo/tracks.h5", "bad"],
    "demo": {"sky_frames": 24, "track_frames": 32, "anomaly_fraction": 0.1},
    "ingest": {"n_shards": 2},
    "score": {"weights": {**default_weights(), "cnn": 0.25}},
    # quarter turns off: the self-supervised CNN then has a task (is the frame turned by 90 degrees?), so
    # the workflow tests cover train_cnn; with every symmetry allowed it would not be trained
    "augment": {"rot90": False},
}


def snakemake(workdir: Path, cfg: dict, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``snakemake --cores 2`` with the repo's Snakefile, in ``workdir``, with ``cfg`` as its config file."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
