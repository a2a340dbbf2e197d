"""FITS files/s of cnnpipe's ingest vs a naive astropy loop, and HDF5 MB/s vs a raw h5py chunked read.

Interleaved (cnnpipe, baseline, cnnpipe, ...; medians), so the shared machine's load hits both alike.
FITS baseline: ``astropy.io.fits.getdata`` on every HDU of every file, cast to float32, ``np.save``
(the least a converter does). cnnpipe does more per file (validation, masks, normalisation, pixel
outliers, tiling, a shard and its manifest); goal >= 2x: each file is opened and parsed once, small
HDUs are processed in batches, reading overlaps computing.
HDF5 baseline: reading the dataset chunk by chunk with h5py, nothing else; goal >= 0.25x (the issue
estimated reading the input and writing the shard alone at ~0.5x: the third line measures that floor on
this machine, the frames copied chunk by chunk into a new HDF5 file); a second line without the pixel-outlier statistics (a 3x3
ring median of every pixel, one compiled pass) shows what they cost. Frames of the tile size (64^2)
are stored as they are;
``--hdf5-side 128`` measures frames cut into overlapping tiles (9 per frame at the default overlap).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from common import interleaved, report
from cnnpipe import config
from cnnpipe.ingest import ingest_shard as _ingest_shard


def ingest_shard(cfg, shard: int, out: Path):
    """cnnpipe's ingest as Snakemake runs it: the output is deleted before the job starts (replacing an
    existing file by rename makes ext4 flush the new file to disk first: a cost no workflow run pays)."""
    out.unlink(missing_ok=True)
    return _ingest_shard(cfg, shard, out)


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
    ap.add_argument("--hdf5-side", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "fits").mkdir()
        (d / "npy").mkdir()
        make_fits(d / "fits", a.files, a.hdus, 64)
        files = sorted((d / "fits").iterdir())
        cfg = config.parse({"inputs": [str(d / "fits")], "ingest": {"n_shards": 1}})

        def naive():
            for f in files:
                for h in range(1, a.hdus + 1):
                    np.save(d / "npy" / f"{f.stem}-{h}.npy", np.asarray(fits.getdata(f, ext=h), dtype=np.float32))

        t = interleaved({"ours": lambda: ingest_shard(cfg, 0, d / "shard.h5"), "naive": naive}, a.rounds)
        report(f"FITS ingest ({a.hdus} HDUs of 64^2/file)", a.files / t["ours"], a.files / t["naive"], "files/s", 2)

        for side in a.hdf5_side:
            frames = a.frames * 64 * 64 // (side * side)
            data = np.random.default_rng(1).random((frames, side, side), dtype=np.float32)
            with h5py.File(d / "big.h5", "w") as f:
                f.create_dataset("images", data=data, chunks=(64, side, side))
            mb = data.nbytes / 1e6
            cfg = config.parse({"inputs": [str(d / "big.h5")], "ingest": {"n_shards": 1}})
            plain = config.parse({"inputs": [str(d / "big.h5")], "ingest": {"n_shards": 1, "pixel_outliers": False}})

            def raw():
                with h5py.File(d / "big.h5") as f:
                    ds = f["images"]
                    for s in range(0, len(ds), 64):
                        np.asarray(ds[s:s + 64], dtype=np.float32)

            def copy():  # the floor of any ingest: read every chunk, write it to a new HDF5 file
                (d / "copy.h5").unlink(missing_ok=True)
                with h5py.File(d / "big.h5") as f, h5py.File(d / "copy.h5", "w") as g:
                    ds = f["images"]
                    out = g.create_dataset("frames", ds.shape, np.float32, chunks=(64, side, side))
                    for s in range(0, len(ds), 64):
                        out[s:s + 64] = np.asarray(ds[s:s + 64], dtype=np.float32)

            t = interleaved({"ours": lambda: ingest_shard(cfg, 0, d / "shard.h5"), "raw": raw,
                             "plain": lambda: ingest_shard(plain, 0, d / "shard.h5"), "copy": copy}, a.rounds)
            report(f"HDF5 ingest ({frames} x {side}^2)", mb / t["ours"], mb / t["raw"], "MB/s", 0.25)
            report("  the same, pixel_outliers: false", mb / t["plain"], mb / t["raw"], "MB/s", 0.25)
            report("  floor: read + write, no compute", mb / t["copy"], mb / t["raw"], "MB/s", 0.25)


if __name__ == "__main__":
    main()
