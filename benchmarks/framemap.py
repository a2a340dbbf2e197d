"""Whole-frame views (cnnpipe.framemap) of a 4096 x 4096 frame of 7225 tiles, against the plain way: paste
every tile into the full frame, then scikit-image's block_reduce. Memory is the point: ours never holds
the full frame (peak traced allocations); time is shown beside it.
Run: python benchmarks/framemap.py
"""
from __future__ import annotations

import tempfile
import tracemalloc
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from skimage.measure import block_reduce

from common import best_of, report
from cnnpipe import framemap
from cnnpipe.tiling import tile_starts

H = W = 4096
T, OVERLAP, PIXELS = 64, 16, 256


def naive(shard: Path, man: pd.DataFrame) -> np.ndarray:
    frame = np.full((H, W), np.nan, np.float32)
    with h5py.File(shard) as f:
        tiles = f["frames"][:]
    for t, y0, x0 in zip(tiles, man.y0, man.x0):
        frame[y0:y0 + T, x0:x0 + T] = t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return block_reduce(frame, (H // PIXELS, W // PIXELS), np.nanmean, cval=np.nan)


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    rows = [(y, x) for y in tile_starts(H, T, OVERLAP) for x in tile_starts(W, T, OVERLAP)]
    man = pd.DataFrame({"source": "big.fits", "key": "0", "index": range(len(rows)), "frame": 0, "shard": 0,
                        "row": range(len(rows)), "y0": [r[0] for r in rows], "x0": [r[1] for r in rows]})
    scores = man[["source", "key", "index"]].assign(value=np.linspace(0, 1, len(rows)))
    frames = pd.DataFrame({"source": ["big.fits"], "key": ["0"], "frame": [0], "height": [H], "width": [W]})
    with tempfile.TemporaryDirectory() as d:
        shard, out = Path(d) / "shard-0.h5", Path(d) / "maps.h5"
        rng = np.random.default_rng(0)
        with h5py.File(shard, "w") as f:
            ds = f.create_dataset("frames", (len(rows), T, T), "float32", chunks=(64, T, T))
            for s in range(0, len(rows), 1024):
                ds[s:s + 1024] = rng.random((min(1024, len(rows) - s), T, T), dtype=np.float32)

        def ours():
            framemap.build({0: shard}, man, scores, frames, T, PIXELS, out)

        ours()
        np.testing.assert_allclose(framemap.read(out)[("big.fits", "0", 0)]["image"], naive(shard, man), rtol=1e-5)
        t_ours, t_naive = best_of(ours, 2), best_of(lambda: naive(shard, man), 2)
        m_ours, m_naive = peak_mib(ours), peak_mib(lambda: naive(shard, man))
    print(f"{len(rows)} tiles of a {H}x{W} frame -> {PIXELS}x{PIXELS}: cnnpipe {t_ours:.2f} s, "
          f"{m_ours:.0f} MiB peak; paste + block_reduce {t_naive:.2f} s, {m_naive:.0f} MiB peak")
    report("frame view: memory (1/MiB)", 1 / m_ours, 1 / m_naive, "1/MiB", 4.0)
    report("frame view: speed (frames/s)", 1 / t_ours, 1 / t_naive, "frames/s", 0.5)


if __name__ == "__main__":
    main()
