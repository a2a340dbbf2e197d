"""FITS reader: every image HDU with 2 dims is a frame, a 3-D cube a stack of frames; BSCALE/BZERO/BLANK
applied by astropy; a frame's population is the folder of its file (a survey's files share one)."""
from __future__ import annotations

import os
import warnings
from typing import Iterator

import numpy as np
from astropy.io import fits

from ..sky import capture
from .base import Block, Problem, Record, Unit, float_frames, one_line

NAME = "fits"
SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz", ".fits.fz")
VALID_BITPIX = (8, 16, 32, 64, -32, -64)
HEADER_CARDS = ("OBJECT", "TELESCOP", "INSTRUME", "DATE-OBS", "FILTER", "EXPTIME", "RA", "DEC")


def plan(path: str, n_shards: int, options: dict) -> list[Unit]:
    """One unit per file: a FITS file is read by one ingest job."""
    return [Unit(path, NAME)]


def read(unit: Unit, chunk_frames: int, options: dict) -> Iterator[Record]:
    yield from read_fits(unit.source, chunk_frames)


def population(source: str, key: str) -> str:
    return os.path.dirname(source)


def _is_image(hdu) -> bool:
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def read_fits(path: str, chunk_frames: int = 64) -> Iterator[Record]:
    """Frames of every 2-D image HDU and every plane of each 3-D cube; BSCALE/BZERO/BLANK applied by astropy."""
    try:  # a broken link, a vanished file or one without read permission: say so instead of crashing
        size = os.path.getsize(path)
        open(path, "rb").close()
    except OSError as exc:
        yield Problem(path, "", -1, f"cannot open: {exc.strerror or one_line(exc)}")
        return
    if size == 0:
        yield Problem(path, "", -1, "empty file (0 bytes)")
        return
    images = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=True)
            with hdul:
                for i, hdu in enumerate(hdul):
                    if not _is_image(hdu):
                        continue
                    key = str(i)
                    shape = hdu.shape
                    if len(shape) == 0:
                        continue  # header-only HDU (e.g. an empty primary before extensions)
                    images += 1
                    if hdu.header.get("BITPIX") not in VALID_BITPIX:
                        yield Problem(path, key, -1, f"HDU {i} has BITPIX {hdu.header.get('BITPIX')!r}, "
                                                     f"not one of {', '.join(map(str, VALID_BITPIX))}")
                        continue
                    if len(shape) not in (2, 3):
                        yield Problem(path, key, -1, f"HDU {i} has {len(shape)}-D data {shape}, need 2-D or 3-D")
                        continue
                    compressed = isinstance(hdu, fits.CompImageHDU) or path.lower().endswith(".gz")
                    if not compressed and hdu.size > size:  # size: data bytes the header declares
                        yield Problem(path, key, -1, f"truncated: HDU {i} declares {hdu.size} data "
                                                     f"bytes but the file has {size}")
                        continue
                    header = {c: hdu.header[c] for c in HEADER_CARDS if c in hdu.header}
                    wcs, wcs_problem = capture(hdu.header, *shape[-2:])
                    planes = shape[0] if len(shape) == 3 else 1
                    for start in range(0, planes, chunk_frames):
                        block = hdu.section[start:start + chunk_frames] if len(shape) == 3 else hdu.data[None]
                        block = float_frames(block)
                        yield Block(path, key, start, block, np.full(len(block), -1), header, wcs, wcs_problem)
    except Exception as exc:  # noqa: BLE001 - quarantine anything astropy cannot read
        yield Problem(path, "", -1, f"unreadable FITS: {one_line(exc)}")
        return
    if images == 0:
        yield Problem(path, "", -1, "no image data (header only or table HDUs only)")
