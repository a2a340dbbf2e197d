"""Hostile inputs, made small on the fly (also run as a script: python tests/hostile_corpus.py DIR).

``outside(d)`` writes files that live outside the inputs and carry :data:`MARKER`; no byte of them may reach
any output. ``hostile(d, outside)`` returns {path relative to d: substring its quarantine reason must
contain}; ``readable(d)`` returns {path relative to d: frames it holds} for files placed in hostile spots
(a 1200-level-deep folder, a folder with symlink loops, a file alone in its folder) that must be read, and
ranked, exactly once; ``formula(d)`` writes files named like spreadsheet formulas.
"""
from __future__ import annotations

import gzip
import os
import socket
import sys
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

MARKER = "cnnpipe-outside-marker-5b1e0c"


def _img(seed: int, shape=(32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 10, shape).astype(np.float32)


def _header(shape: tuple[int, ...], bitpix: int = -32) -> bytes:
    h = fits.Header()
    h["SIMPLE"], h["BITPIX"], h["NAXIS"] = True, bitpix, len(shape)
    for i, n in enumerate(reversed(shape), 1):
        h[f"NAXIS{i}"] = n
    return h.tostring().encode()  # padded to 2880 bytes


def _gzip_zeros(path: Path, head: bytes, n_bytes: int) -> None:
    """A gzip file of ``head`` then ``n_bytes`` zero bytes, as many gzip members of 64 MiB each (valid
    gzip, compressed once): 1 GiB of zeros takes ~1 MB on disk."""
    block = 64 * 2 ** 20
    member = gzip.compress(b"\0" * block, compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(head))
        for _ in range(n_bytes // block):
            f.write(member)
        if n_bytes % block:
            f.write(gzip.compress(b"\0" * (n_bytes % block)))


def outside(d: Path) -> Path:
    """Files outside the inputs (marked): an HDF5 dataset and raw bytes other inputs point at."""
    d.mkdir(parents=True, exist_ok=True)
    with h5py.File(d / "secret.h5", "w") as f:
        ds = f.create_dataset("secret", data=_img(99, (4, 32, 32)))
        ds.attrs["note"] = MARKER
    (d / "raw.bin").write_bytes((MARKER.encode() * 1000)[: 4 * 32 * 32 * 4])
    return d


def hostile(d: Path, out: Path) -> dict[str, str]:
    """Files that must be quarantined, each with a one-line reason, without hanging or a big allocation."""
    d.mkdir(parents=True, exist_ok=True)
    cases: dict[str, str] = {}

    # a 1 MB .fits.gz inflating to 1 GiB (a 16384 x 16384 float32 frame of zeros)
    _gzip_zeros(d / "gz_bomb.fits.gz", _header((16384, 16384)), 16384 * 16384 * 4)
    cases["gz_bomb.fits.gz"] = "max_frame_pixels"
    # a small good image, then 1 GiB of zeros in the same gzip stream (astropy searched it for a header)
    _gzip_zeros(d / "gz_trailing.fits.gz", _header((32, 32)) + _img(5).astype(">f4").tobytes().ljust(2880 * 2, b"\0"),
                2 ** 30)
    cases["gz_trailing.fits.gz"] = "more data than its headers declare"
    # header only, gzip: declares a 100000 x 100000 frame
    (d / "gz_header_huge.fits.gz").write_bytes(gzip.compress(_header((100000, 100000))))
    cases["gz_header_huge.fits.gz"] = "max_frame_pixels"

    # tile-compressed, header only: huge, and small (the tile table is missing)
    c = np.arange(64 * 64, dtype=np.int32).reshape(64, 64)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(c, compression_type="RICE_1")]).writeto(d / "_fz.tmp")
    raw = (d / "_fz.tmp").read_bytes()
    os.remove(d / "_fz.tmp")
    end = raw.index(b"END" + b" " * 77, 2880)
    head = raw[: (end // 2880 + 1) * 2880]
    (d / "fz_header_small.fits.fz").write_bytes(head)
    cases["fz_header_small.fits.fz"] = "compressed tile data missing"
    big = head.replace(b"ZNAXIS1 = " + b"64".rjust(20), b"ZNAXIS1 = " + b"100000".rjust(20))
    big = big.replace(b"ZNAXIS2 = " + b"64".rjust(20), b"ZNAXIS2 = " + b"100000".rjust(20))
    assert big != head
    (d / "fz_header_huge.fits.fz").write_bytes(big)
    cases["fz_header_huge.fits.fz"] = "max_file_bytes"

    # (20000, 1, 1): 80 KB that would pad into 20000 tiles
    fits.PrimaryHDU(np.ones((20000, 1, 1), np.float32)).writeto(d / "tiny_cube.fits")
    cases["tiny_cube.fits"] = "min_frame_side"

    # HDF5: a 1.4 KB file declaring 10 frames of 8192 x 8192, nothing written
    with h5py.File(d / "h5_bomb.h5", "w") as f:
        f.create_dataset("x", shape=(10, 8192, 8192), dtype="f4", chunks=(1, 256, 256))
    cases["h5_bomb.h5"] = "none of its chunks is written"
    # the same with one (compressed) chunk written: refused for its frame size
    with h5py.File(d / "h5_big_frames.h5", "w") as f:
        ds = f.create_dataset("x", shape=(10, 8192, 8192), dtype="f4", chunks=(1, 256, 256), compression="gzip")
        ds[0, :256, :256] = 1
    cases["h5_big_frames.h5"] = "max_frame_pixels"
    with h5py.File(d / "h5_unwritten.h5", "w") as f:
        f.create_dataset("x", shape=(40, 64, 64), dtype="f4", chunks=(1, 64, 64))
    cases["h5_unwritten.h5"] = "none of its chunks is written"
    # HDF5 whose pixels live in other files: external raw storage, a virtual dataset, an external link
    with h5py.File(d / "h5_external.h5", "w") as f:
        f.create_dataset("x", shape=(4, 32, 32), dtype="f4", external=[(str(out / "raw.bin"), 0, 4 * 32 * 32 * 4)])
    cases["h5_external.h5"] = "external file"
    layout = h5py.VirtualLayout(shape=(4, 32, 32), dtype="f4")
    layout[:] = h5py.VirtualSource(str(out / "secret.h5"), "secret", shape=(4, 32, 32))
    with h5py.File(d / "h5_virtual.h5", "w") as f:
        f.create_virtual_dataset("x", layout)
    cases["h5_virtual.h5"] = "virtual dataset"
    with h5py.File(d / "h5_extlink.h5", "w") as f:
        f["data"] = h5py.ExternalLink(str(out / "secret.h5"), "/secret")
    cases["h5_extlink.h5"] = "external links are not followed"

    # not regular files, named like inputs: a FIFO (opening it blocks), a character device, a socket
    os.mkfifo(d / "fifo.fits")
    cases["fifo.fits"] = "named pipe"
    os.symlink("/dev/zero", d / "device.fits")
    cases["device.fits"] = "character device"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(d / "sock.h5"))
        cases["sock.h5"] = "socket"
    except OSError:  # the path is longer than a socket address allows: no socket case here
        pass
    finally:
        sock.close()
    return cases


def readable(d: Path) -> dict[str, int]:
    """Good files in hostile places: {path relative to d: number of frames}."""
    d.mkdir(parents=True, exist_ok=True)
    cases: dict[str, int] = {}
    # symlink loops: a folder linking to itself and to its parent, and a second name for a file
    loop = d / "loop"
    loop.mkdir()
    fits.PrimaryHDU(_img(1)).writeto(loop / "ok.fits")
    os.symlink(".", loop / "self")
    os.symlink("..", loop / "up")
    os.symlink("ok.fits", loop / "zz_alias.fits")
    os.link(loop / "ok.fits", loop / "zz_hardlink.fits")
    cases["loop/ok.fits"] = 1
    # a folder 1200 levels deep (os.walk in Python 3.11 recurses: RecursionError at ~1000)
    deep = d / "deep"
    deep.mkdir()
    for _ in range(1200):  # one level at a time: mkdir(parents=True) recurses too
        deep = deep / "d"
        deep.mkdir()
    fits.PrimaryHDU(_img(2)).writeto(deep / "deep.fits")
    cases[str((deep / "deep.fits").relative_to(d))] = 1
    # a file alone in its folder, a population of one, with a cosmic-ray hit: it must not score 0
    (d / "lonely").mkdir()
    hit = _img(3)
    hit[10, 12] = 30000.0
    fits.PrimaryHDU(hit).writeto(d / "lonely" / "one.fits")
    cases["lonely/one.fits"] = 1
    return cases


def formula(d: Path) -> list[str]:
    """Files whose names a spreadsheet would evaluate as formulas when a CSV cell starts with them (name
    them as inputs relative to ``d`` so the ``source`` cell starts with the formula)."""
    names = ["=HYPERLINK(1).fits", "+1+1.fits", "-2+3.fits", "@SUM(1).fits"]
    for i, name in enumerate(names):
        fits.PrimaryHDU(_img(10 + i)).writeto(d / name)
    return names


def remove_deep(d: Path) -> None:
    """Delete the 1200-level folder under ``d/deep`` one level at a time, deepest first: shutil.rmtree
    (pytest's clean-up of old temporary folders) recurses and fails on it."""
    chain = [d / "deep"]
    while (chain[-1] / "d").is_dir():
        chain.append(chain[-1] / "d")
    for folder in reversed(chain):
        for entry in os.scandir(folder):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        os.rmdir(folder)


def own_output(workdir: Path) -> Path:
    """A frames shard where the workflow writes its own (results/frames): must never be read as an input."""
    path = workdir / "results" / "frames" / "shard-9.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=_img(7, (4, 64, 64))).attrs["note"] = MARKER
    return path


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    secret = outside(root / "outside")
    print(len(hostile(root / "hostile", secret)), "hostile files,", len(readable(root / "readable")),
          "readable files in hostile places, in", root)
