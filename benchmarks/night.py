"""A night of survey frames end to end: ``snakemake --cores 2`` on FITS frames made on the fly, default config.

Frames: ``--frames`` of ``--side`` x ``--side`` float32 (default 8 x 4096^2, 512 MB): sky noise, a few
thousand stars, cosmic-ray hits and a satellite trail. Prints the wall time, per rule the jobs, summed and
longest job time and peak RSS, the tiles ranked per second, and the floor: reading the frames
(``fits.getdata``) plus one forward pass of the VAE over every tile, measured in this process with the same
cores (one thread per core). ``--scale 4`` also runs a night 4x larger (4x the frames) and prints the time ratio
(goal <= 2.5x: training is bounded by its budget, ingest and scoring grow linearly). Goal for the default
night: <= 300 s on 2 cores. Not run by CI (minutes, 0.5-2.5 GB of temporary files).
Run: python benchmarks/night.py [--frames 8] [--side 4096] [--scale 4] [--cores 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import per_rule, rule_benchmarks, run_workflow


def make_night(d: Path, frames: int, side: int, seed: int = 0) -> None:
    """``frames`` FITS files of sky: Gaussian noise on a level, stars (Gaussian PSF), hits, one trail each."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-4:5, -4:5]
    psf = np.exp(-(yy ** 2 + xx ** 2) / (2 * 1.6 ** 2)).astype(np.float32)
    d.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        img = rng.standard_normal((side, side), dtype=np.float32)
        img *= 10.0
        img += 1000.0
        n_stars = side * side // 8000
        for y, x, peak in zip(rng.integers(0, side - 9, n_stars), rng.integers(0, side - 9, n_stars),
                              rng.pareto(1.5, n_stars) * 50 + 20):
            img[y:y + 9, x:x + 9] += np.float32(peak) * psf
        hits = rng.integers(0, side, (side // 64, 2))
        img[hits[:, 0], hits[:, 1]] += 3000.0
        t = np.arange(side // 4)
        y0, x0 = rng.integers(0, side // 2, 2)
        img[y0 + t // 2, x0 + t] += 40.0                                   # a faint satellite trail
        fits.PrimaryHDU(img, header=fits.Header({"OBJECT": f"night field {i}"})).writeto(d / f"frame{i:03d}.fits")


def floor_seconds(inputs: Path, tiles: int, cores: int) -> tuple[float, float]:
    """(read, forward): seconds to read every frame, and one VAE forward pass over ``tiles`` feature maps
    spread over ``cores`` (one thread over tiles / cores maps: the way the score jobs share the cores)."""
    import torch
    from astropy.io import fits

    from cnnpipe.config import parse
    from cnnpipe.models import build
    from cnnpipe.train import model_config

    t0 = time.perf_counter()
    for f in sorted(inputs.glob("*.fits")):
        np.asarray(fits.getdata(f), dtype=np.float32)
    read = time.perf_counter() - t0
    torch.set_num_threads(1)
    cfg = parse({"device": "cpu"})
    shape = (cfg.channels, cfg.feature_size, cfg.feature_size)
    vae = build(model_config(cfg, "vae", shape)).eval()
    x = torch.rand((256, *shape))
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(0, tiles // cores, 256):
            vae(x)
    return read, time.perf_counter() - t0


def night(root: Path, frames: int, side: int, cores: int) -> dict:
    inputs = root / "frames"
    t0 = time.perf_counter()
    make_night(inputs, frames, side)
    made = time.perf_counter() - t0
    wall = run_workflow(root / "run", {"inputs": [str(inputs)]}, cores, timeout=7200)
    table = per_rule(rule_benchmarks(root / "run"))
    tiles = len(pd.read_csv(root / "run" / "results" / "anomalies.csv", usecols=["score"]))
    read, forward = floor_seconds(inputs, tiles, cores)
    print(f"night of {frames} x {side}^2 float32 ({frames * side * side * 4 / 1e6:.0f} MB, made in {made:.0f} s): "
          f"{tiles} tiles ranked, wall {wall:.1f} s = {tiles / wall:.0f} tiles/s; floor {read + forward:.1f} s "
          f"(read {read:.1f} s + one VAE forward {forward:.1f} s = {tiles / (read + forward):.0f} tiles/s), "
          f"wall / floor {wall / (read + forward):.1f}x", flush=True)
    for rule, r in table.iterrows():
        print(f"  {rule:<16} {int(r.jobs):2d} job(s)  total {r.total_s:7.1f} s  longest {r.max_job_s:7.1f} s  "
              f"peak RSS {r.max_rss_mb:6.0f} MB", flush=True)
    return {"frames": frames, "side": side, "tiles": tiles, "wall_s": wall, "floor_s": read + forward,
            "rules": table.reset_index().to_dict("records")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--scale", type=int, default=0, help="also run a night this many times larger (0 = no)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--goal", type=float, default=300.0, help="seconds for the first night")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep or tmp)
        runs = [night(root / "x1", a.frames, a.side, a.cores)]
        print(f"goal <= {a.goal:.0f} s: {'met' if runs[0]['wall_s'] <= a.goal else 'NOT met'}")
        if a.scale:
            runs.append(night(root / f"x{a.scale}", a.frames * a.scale, a.side, a.cores))
            ratio = runs[1]["wall_s"] / runs[0]["wall_s"]
            verdict = "met" if ratio <= 2.5 else "NOT met"
            print(f"{a.scale}x the frames: {ratio:.2f}x the wall time (goal <= 2.5x: {verdict})")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
