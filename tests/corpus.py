"""Make good and malformed FITS/HDF5 inputs (also run as a script: python tests/corpus.py DIR).

``good(d)`` returns {filename: list of expected frames (float arrays, NaN = masked)} in reading order;
``bad(d)`` returns {filename: substring the quarantine reason must contain}.
"""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits


def _img(seed: int, shape=(20, 24)) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 10, shape).astype(np.float32)


def good(d: Path) -> dict[str, list[np.ndarray]]:
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[np.ndarray]] = {}
    a = _img(1)
    fits.PrimaryHDU(a).writeto(d / "single.fits")
    out["single.fits"] = [a]

    # big-endian float64 stored explicitly, plus NaN and inf pixels that must stay masked
    b = _img(2).astype(">f8")
    b[3, 4], b[5, 6] = np.nan, np.inf
    fits.PrimaryHDU(b).writeto(d / "bigendian.fit")
    out["bigendian.fit"] = [np.where(np.isfinite(b), b, np.nan).astype(np.float32)]

    m1, m2 = _img(3), _img(4, (16, 16))
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(m1), fits.BinTableHDU.from_columns(
        [fits.Column(name="x", format="E", array=np.arange(3))]), fits.ImageHDU(m2)]).writeto(d / "mef.fits")
    out["mef.fits"] = [m1, m2]

    raw = np.arange(20 * 24, dtype=np.int16).reshape(20, 24) - 200
    h = fits.PrimaryHDU(raw.copy())
    h.header["BSCALE"], h.header["BZERO"], h.header["BLANK"] = 0.5, 1000.0, -200
    h.writeto(d / "scaled_int16.fts")
    exp = (raw * 0.5 + 1000.0).astype(np.float32)
    exp[raw == -200] = np.nan
    out["scaled_int16.fts"] = [exp]

    cube = np.stack([_img(5 + i) for i in range(3)])
    with gzip.open(d / "cube.fits.gz", "wb") as f:
        fits.PrimaryHDU(cube).writeto(f)
    out["cube.fits.gz"] = list(cube)

    c = np.round(_img(9) * 4).astype(np.int32)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(c, compression_type="RICE_1")]).writeto(d / "tile.fits.fz")
    out["tile.fits.fz"] = [c.astype(np.float32)]

    stack = np.stack([_img(20 + i) for i in range(5)])
    with h5py.File(d / "stack.h5", "w") as f:
        f.create_dataset("meta/info", data=np.arange(4))
        f.create_dataset("images", data=stack, chunks=(2, 20, 24))
    out["stack.h5"] = list(stack)

    rgb = np.random.default_rng(30).integers(0, 255, (3, 3, 20, 24)).astype(np.uint8)
    with h5py.File(d / "nchw.hdf5", "w") as f:
        f.create_dataset("x", data=rgb)
    out["nchw.hdf5"] = list(rgb.astype(np.float32).mean(axis=1))
    return out


def bad(d: Path) -> dict[str, str]:
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    (d / "zero.fits").write_bytes(b"")
    out["zero.fits"] = "empty file"

    fits.PrimaryHDU(_img(1, (100, 100))).writeto(d / "full.fits")
    raw = (d / "full.fits").read_bytes()
    (d / "truncated.fits").write_bytes(raw[: 2880 + 5000])
    os.remove(d / "full.fits")
    out["truncated.fits"] = "truncated"

    fits.PrimaryHDU().writeto(d / "header_only.fits")
    out["header_only.fits"] = "no image data"

    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="flux", format="E", array=np.ones(4))])]).writeto(d / "table_only.fits")
    out["table_only.fits"] = "no image data"

    fits.PrimaryHDU(np.full((16, 16), np.nan, dtype=np.float32)).writeto(d / "nan_only.fits")
    out["nan_only.fits"] = "all pixels are NaN"

    fits.PrimaryHDU(np.arange(10, dtype=np.float32)).writeto(d / "one_d.fits")
    out["one_d.fits"] = "1-D"

    fits.PrimaryHDU(np.zeros((1, 2, 2, 3, 3), dtype=np.float32)).writeto(d / "five_d.fits")
    out["five_d.fits"] = "5-D"

    h = fits.Header()
    h["SIMPLE"], h["BITPIX"], h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = True, -32, 2, 100000, 100000
    (d / "huge_naxis.fits").write_bytes(h.tostring().encode() + b"\0" * 2880)
    out["huge_naxis.fits"] = "truncated"

    (d / "garbage.fits").write_bytes(b"this is not a FITS file at all\n" * 200)
    out["garbage.fits"] = "unreadable FITS"

    with h5py.File(d / "rank2.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((10, 10)))
    out["rank2.h5"] = "no 3-D"

    with h5py.File(d / "strings.h5", "w") as f:
        f.create_dataset("images", data=np.array([[[b"a"]]], dtype="S1"))
    out["strings.h5"] = "dtype"

    (d / "not_hdf5.h5").write_bytes(b"\x89HDF-no" * 100)
    out["not_hdf5.h5"] = "unable to"

    (d / "notes.txt").write_text("hello")

    # BITPIX that the FITS standard does not allow (17): astropy refuses the HDU
    h = fits.Header()
    h["SIMPLE"], h["BITPIX"], h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = True, 17, 2, 16, 16
    (d / "bad_bitpix.fits").write_bytes(h.tostring().encode() + b"\0" * 2880)
    out["bad_bitpix.fits"] = "BITPIX"

    # a tile-compressed image whose compressed bytes are overwritten: decompression fails
    c = np.round(_img(11, (64, 64)) * 4).astype(np.int32)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(c, compression_type="RICE_1")]).writeto(d / "corrupt_tile.fits.fz")
    raw = bytearray((d / "corrupt_tile.fits.fz").read_bytes())
    heap = 2 * 2880 + 2880  # primary header, compressed-table header (2 blocks), start of the table/heap
    for i in range(heap + 64, len(raw) - 64):
        raw[i] ^= 0xA5
    (d / "corrupt_tile.fits.fz").write_bytes(bytes(raw))
    out["corrupt_tile.fits.fz"] = "unreadable FITS"

    # unreadable: mode 000 blocks reads for normal users, but root reads anything, so as root a broken
    # symlink named like a FITS file stands in for a file that cannot be opened
    (d / "no_access.fits").write_bytes((d / "bad_bitpix.fits").read_bytes())
    if os.geteuid() == 0:
        os.remove(d / "no_access.fits")
        os.symlink(d / "vanished-target.fits", d / "no_access.fits")
        out["no_access.fits"] = "cannot open"
    else:
        fits.PrimaryHDU(_img(12)).writeto(d / "no_access.fits", overwrite=True)
        os.chmod(d / "no_access.fits", 0)
        out["no_access.fits"] = "cannot open"
    return out


def odd(d: Path) -> dict[str, str]:
    """Readable files with hostile names or headers: they must be ranked, their text shown escaped.

    Returns {filename as the OS spells it: the header OBJECT value}.
    """
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    name = os.fsdecode(b"latin1_\xe9t\xe9.fits")  # not UTF-8: surrogate-escaped by Python
    fits.PrimaryHDU(_img(40, (64, 64))).writeto(os.path.join(d, name))
    out[name] = ""
    h = fits.PrimaryHDU(_img(41, (64, 64)))
    h.header["OBJECT"] = "<script>alert(1)</script>"
    h.writeto(d / "html_header.fits")
    out["html_header.fits"] = "<script>alert(1)</script>"
    return out


def wcs_frames(d: Path) -> dict[str, str]:
    """Three tiled frames for the sky-coordinate path: ``tan.fits`` with a rotated TAN WCS (100 x 150, so a
    swapped x/y shows), ``nowcs.fits`` without a WCS, ``broken.fits`` with a WCS astropy rejects (an unknown
    projection code). Returns {filename: what its WCS is}."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    tan = fits.PrimaryHDU(rng.normal(100, 10, (100, 150)).astype(np.float32))
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    scale = 0.2 / 3600
    tan.header.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=40.0, CRPIX2=60.5, CRVAL1=150.1, CRVAL2=2.2,
                      CD1_1=-scale * c, CD1_2=scale * s, CD2_1=scale * s, CD2_2=scale * c, RADESYS="ICRS")
    tan.header["OBJECT"] = "COSMOS (test)"
    tan.writeto(d / "tan.fits")
    fits.PrimaryHDU(rng.normal(100, 10, (90, 90)).astype(np.float32)).writeto(d / "nowcs.fits")
    broken = fits.PrimaryHDU(rng.normal(100, 10, (90, 90)).astype(np.float32))
    broken.header.update(CTYPE1="RA---XYZ", CTYPE2="DEC--XYZ", CRPIX1=1.0, CRPIX2=1.0, CRVAL1=10.0, CRVAL2=20.0,
                         CDELT1=-1e-4, CDELT2=1e-4)
    broken.writeto(d / "broken.fits")
    return {"tan.fits": "TAN", "nowcs.fits": "none", "broken.fits": "broken"}


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    print(len(good(root / "good")), "good files,", len(bad(root / "bad")), "bad files,",
          len(odd(root / "odd")), "odd-but-readable files in", root)

