"""FITS reader: every image HDU with 2 dims is a frame, a 3-D cube a stack of frames; BSCALE/BZERO/BLANK
applied by astropy; a frame's population is the folder of its file (a survey's files share one)."""
from __future__ import annotations

import os
import warnings
from typing import Iterator

import numpy as np
from astropy.io import fits

from ..limits import (HEADER_BYTES, BoundedReader, Limits, bytes_problem, frame_problem, frames_per_read,
                      gzip_primary_problem, regular_file_problem)
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
    yield from read_fits(unit.source, chunk_frames, options.get("limits") or Limits())


def population(source: str, key: str) -> str:
    return os.path.dirname(source)


def _is_image(hdu) -> bool:
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def read_fits(path: str, chunk_frames: int = 64, limits: Limits = Limits()) -> Iterator[Record]:
    """Frames of every 2-D image HDU and every plane of each 3-D cube; BSCALE/BZERO/BLANK applied by astropy.
    Every HDU's declared frame size and the file's declared bytes so far are checked against ``limits``
    before its data is read or inflated (a 1 MB .fits.gz declaring 1 GiB is refused from its header)."""
    size, why = _open_problem(path)
    if why:
        yield Problem(path, "", -1, why)
        return
    images, gzipped = 0, path.lower().endswith(".gz")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = BoundedReader(path, HEADER_BYTES if gzipped else 2 ** 62)
            if gzipped and (why := gzip_primary_problem(raw, size, limits)):
                raw.close()
                yield Problem(path, "0", -1, why)
                return
            hdul = fits.open(raw, memmap=False, lazy_load_hdus=True)
            with raw, hdul:
                for i, hdu in enumerate(hdul):
                    # limits from the headers alone, before any data is read or inflated; a limit hit ends
                    # the file (the next HDU of a .gz is only reached by inflating this one's data)
                    end, why = _declared_problem(i, hdu, size, gzipped, limits)
                    if why:
                        yield Problem(path, str(i), -1, why)
                        return
                    raw.limit = end + HEADER_BYTES  # astropy may read the next header, nothing further
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
                    if not (gzipped or isinstance(hdu, fits.CompImageHDU)) and (why := _truncated(i, hdu, end, size)):
                        yield Problem(path, key, -1, why)
                        continue
                    if why := frame_problem(*shape[-2:], limits, f"HDU {i}"):
                        yield Problem(path, key, -1, why)
                        return
                    yield from _blocks(path, i, hdu, frames_per_read(shape[-1] * shape[-2], chunk_frames, limits))
    except Exception as exc:  # noqa: BLE001 - quarantine anything astropy cannot read
        yield Problem(path, "", -1, f"unreadable FITS: {one_line(exc)}")
        return
    if images == 0:
        yield Problem(path, "", -1, "no image data (header only or table HDUs only)")


def _open_problem(path: str) -> tuple[int, str | None]:
    """(size, why it cannot be read): not a regular file (a FIFO would block open() forever), a broken
    link, a vanished file, one without read permission, an empty one."""
    if why := regular_file_problem(path):
        return 0, why
    try:
        size = os.path.getsize(path)
        open(path, "rb").close()
    except OSError as exc:
        return 0, f"cannot open: {exc.strerror or one_line(exc)}"
    return size, None if size else "empty file (0 bytes)"


def _declared_problem(i: int, hdu, size: int, gzipped: bool, limits: Limits) -> tuple[int, str | None]:
    """(where HDU ``i`` ends in the file, why the bytes declared so far are refused), from headers alone."""
    info = hdu.fileinfo()  # (the HDU's own: HDUList.fileinfo re-verifies every header, 60% of a small file's read)
    end = info["datLoc"] + info["datSpan"]
    why = bytes_problem(end, size, limits, f"up to HDU {i}, the file") if gzipped else None
    if not why and isinstance(hdu, fits.CompImageHDU):
        why = bytes_problem(hdu.size, size, limits, f"HDU {i}")
    return end, why


def _truncated(i: int, hdu, end: int, size: int) -> str | None:
    """Why HDU ``i`` (its padded data ending at byte ``end``) is cut short by the file's end, if it is. Its
    exact data size (``hdu.size``, a parse of the header's axis cards: 1/6 of a small file's read) is only
    needed when the file ends inside the last 2880-byte block of padding."""
    if end <= size:
        return None
    start = hdu.fileinfo()["datLoc"]
    if start + hdu.size <= size:
        return None
    return f"truncated: HDU {i} declares {hdu.size} data bytes from byte {start} but the file has {size}"


def _blocks(path: str, i: int, hdu, step: int) -> Iterator[Record]:
    """The frames of image HDU ``i``, ``step`` planes at a time (a 2-D image is one block)."""
    key, shape = str(i), hdu.shape
    header = {c: hdu.header[c] for c in HEADER_CARDS if c in hdu.header}
    wcs, wcs_problem = capture(hdu.header, *shape[-2:])
    for start in range(0, shape[0] if len(shape) == 3 else 1, step):
        try:
            block = hdu.section[start:start + step] if len(shape) == 3 else hdu.data[None]
        except (ValueError, IndexError, TypeError) as exc:
            if not isinstance(hdu, fits.CompImageHDU):
                raise
            yield Problem(path, key, -1, f"HDU {i}: compressed tile data missing or truncated for its declared "
                                         f"{shape} image ({one_line(exc)})")
            return
        block = float_frames(block)
        if len(shape) == 2:
            del hdu.data  # astropy keeps the data it read until the file closes; the block is our own copy
        yield Block(path, key, start, block, np.full(len(block), -1), header, wcs, wcs_problem)
