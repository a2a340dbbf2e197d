"""FITS files/s of cnnpipe's ingest vs a naive astropy loop, and HDF5 MB/s vs a raw h5py chunk read.

FITS baseline: ``astropy.io.fits.getdata`` on every file, then cast to float32 (the least a loader must do).
cnnpipe does more per file (validation, masks, normalisation, tiling, writing a shard), so the goal is
about avoiding waste: >= 2x by reading each file once (getdata re-opens and re-parses per HDU).
HDF5 baseline: reading the dataset chunk by chunk with h5py; goal >= 0.5x.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from common import best_of, report
from cnnpipe import config
from cnnpipe.ingest import ingest_shard


def make_fits(d: Path, files: int, hdus: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(files):
        fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(rng.random((size, size), dtype=np.float32))
                                            for _ in range(hdus)]).writeto(d / f"f{i:04d}.fits")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--hdus", type=int, default=4)
    ap.add_argument("--frames", type=int, default=4000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "fits").mkdir()
        make_fits(d / "fits", a.files, a.hdus, 64)
        files = sorted((d / "fits").iterdir())
        cfg = config.parse({"inputs": [str(d / "fits")], "ingest": {"n_shards": 1}})

        def naive():
            for f in files:
                for h in range(1, a.hdus + 1):
                    np.asarray(fits.getdata(f, ext=h), dtype=np.float32)

        t_ours = best_of(lambda: ingest_shard(cfg, 0, d / "shard.h5"))
        report("FITS ingest (4 HDUs/file)", a.files / t_ours, a.files / best_of(naive), "files/s", 2)

        data = np.random.default_rng(1).random((a.frames, 64, 64), dtype=np.float32)
        with h5py.File(d / "big.h5", "w") as f:
            f.create_dataset("images", data=data, chunks=(64, 64, 64))
        mb = data.nbytes / 1e6
        cfg = config.parse({"inputs": [str(d / "big.h5")], "ingest": {"n_shards": 1}})

        def raw():
            with h5py.File(d / "big.h5") as f:
                ds = f["images"]
                for s in range(0, len(ds), 64):
                    np.asarray(ds[s:s + 64], dtype=np.float32)

        t_ours = best_of(lambda: ingest_shard(cfg, 0, d / "shard.h5"))
        report("HDF5 ingest", mb / t_ours, mb / best_of(raw), "MB/s", 0.5)


if __name__ == "__main__":
    main()
