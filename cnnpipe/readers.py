"""Readers for FITS and HDF5 inputs: resolve paths, split them into units of work, yield frames.

Every problem with an input becomes a :class:`Problem` (a one-line reason) instead of an exception, so one
bad file never stops a run. Frames come out as float32 arrays with NaN marking masked pixels.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Union

import h5py
import numpy as np
from astropy.io import fits

from . import discover
from .limits import (HEADER_BYTES, BoundedReader, Limits, bytes_problem, frame_problem, frames_per_read,
                     gzip_primary_problem, hdf5_external_links, hdf5_link_problem, hdf5_storage_problem,
                     regular_file_problem)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz", ".fits.fz")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


@dataclass(frozen=True)
class Unit:
    """A piece of input read by one ingest job: a whole FITS file, or a frame range of an HDF5 dataset."""

    source: str
    kind: str  # "fits", "hdf5" or "bad"
    key: str = ""
    start: int = 0
    stop: int = 0
    reason: str = ""


@dataclass
class Block:
    """Consecutive frames ``start .. start+n-1`` of one HDU or dataset, read together."""

    source: str
    key: str
    start: int
    images: np.ndarray  # (n, H, W) float32, NaN = masked
    labels: np.ndarray  # (n,) int, -1 = no label
    header: dict

    def frames(self) -> list[tuple[int, np.ndarray]]:
        return [(self.start + j, img) for j, img in enumerate(self.images)]


@dataclass
class Problem:
    source: str
    key: str
    frame: int
    reason: str


Record = Union[Block, Problem]


def file_kind(path: str) -> str | None:
    name = path.lower()
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    return None


def resolve_inputs(entries: list[str], exclude: tuple[str, ...] = (),
                   keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Expand files, folders (recursive) and globs into sorted ``(path, problem)`` pairs; problem '' = fine.
    ``exclude``/``keep``: the workflow's own output folders, never read (see :mod:`cnnpipe.discover`)."""
    return discover.resolve(entries, file_kind, exclude, keep)


def find_hdf5_dataset(f: h5py.File, name: str | None) -> h5py.Dataset:
    """The named dataset, or the first 3-D/4-D dataset in the file (in h5py's visit order)."""
    if name:
        if name not in f:
            raise ValueError(f"no dataset '{name}'")
        obj = f[name]
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"'{name}' is a group, not a dataset")
        return obj
    found: list[h5py.Dataset] = []
    f.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4)
                 and not found else None)
    if not found:
        shapes = []
        f.visititems(lambda n, o: shapes.append(f"{n}{o.shape}") if isinstance(o, h5py.Dataset) else None)
        links = hdf5_external_links(f)
        raise ValueError("no 3-D (N,H,W) or 4-D (N,C,H,W) dataset" + (f"; found {', '.join(shapes[:3])}"
                                                                     if shapes else "")
                         + (f"; external links are not followed ({', '.join(links[:3])})" if links else ""))
    return found[0]


def check_hdf5_dataset(ds: h5py.Dataset) -> None:
    if ds.ndim not in (3, 4):
        raise ValueError(f"dataset '{ds.name}' has rank {ds.ndim} {ds.shape}, need (N,H,W) or (N,C,H,W)")
    if not (np.issubdtype(ds.dtype, np.number) or ds.dtype == np.bool_) or np.issubdtype(ds.dtype, np.complexfloating):
        raise ValueError(f"dataset '{ds.name}' has dtype {ds.dtype}, need integer or float pixels")


def plan_units(paths: list[tuple[str, str]], n_shards: int, hdf5_dataset: str | None,
               limits: Limits = Limits()) -> list[Unit]:
    """Split resolved inputs into units: one per FITS file, ``n_shards`` frame ranges per HDF5 dataset.
    An HDF5 dataset outside ``limits`` or whose data lives in another file is one quarantined unit."""
    units: list[Unit] = []
    for path, problem in paths:
        kind = file_kind(path) if not problem else None
        if kind == "fits":
            units.append(Unit(path, "fits"))
        elif kind == "hdf5":
            try:
                if why := regular_file_problem(path) or (hdf5_dataset and _hdf5_link(path, hdf5_dataset)):
                    raise ValueError(why)
                with h5py.File(path, "r") as f:
                    ds = find_hdf5_dataset(f, hdf5_dataset)
                    check_hdf5_dataset(ds)
                    if why := hdf5_storage_problem(ds) or _hdf5_limits(ds, path, limits):
                        raise ValueError(why)
                    n, key = ds.shape[0], ds.name
            except Exception as exc:  # noqa: BLE001 - any unreadable file is quarantined, not fatal
                units.append(Unit(path, "bad", reason=_one_line(exc)))
                continue
            step = max(1, math.ceil(n / n_shards))
            units += [Unit(path, "hdf5", key, s, min(n, s + step)) for s in range(0, n, step)]
            if n == 0:
                units.append(Unit(path, "bad", key, reason="dataset holds no frames"))
        else:
            units.append(Unit(path, "bad", reason=problem))
    return units


def _hdf5_link(path: str, name: str) -> str | None:
    with h5py.File(path, "r") as f:
        return hdf5_link_problem(f, name)


def _hdf5_limits(ds: h5py.Dataset, path: str, limits: Limits) -> str | None:
    h, w = ds.shape[-2:]
    return (frame_problem(h, w, limits, f"dataset '{ds.name}'")
            or bytes_problem(ds.nbytes, os.path.getsize(path), limits, f"dataset '{ds.name}'"))


def shard_units(units: list[Unit], shard: int, n_shards: int) -> list[Unit]:
    """The units ingest job ``shard`` reads: every ``n_shards``-th, so files spread evenly over shards."""
    return units[shard::n_shards]


def read_unit(unit: Unit, chunk_frames: int = 64, hdf5_labels: str | None = None,
              limits: Limits = Limits()) -> Iterator[Record]:
    """Yield the frames (or problems) of one unit, reading at most ``chunk_frames`` frames (and at most
    ``limits.max_read_bytes``) at a time."""
    if unit.kind == "bad":
        yield Problem(unit.source, unit.key, -1, unit.reason)
    elif unit.kind == "fits":
        yield from read_fits(unit.source, chunk_frames, limits)
    else:
        yield from read_hdf5(unit, chunk_frames, hdf5_labels, limits)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return ("out of memory (lower ingest.limits.max_frame_pixels or max_read_bytes, or give the job "
                "more memory)")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _float_frames(block) -> np.ndarray:
    """Native-endian float32 copy with every non-finite pixel (NaN, +-inf) set to NaN, the mask marker."""
    out = np.asarray(block, dtype=np.float32)
    out[~np.isfinite(out)] = np.nan
    return out


VALID_BITPIX = (8, 16, 32, 64, -32, -64)
HEADER_CARDS = ("OBJECT", "TELESCOP", "INSTRUME", "DATE-OBS", "FILTER", "EXPTIME", "RA", "DEC")


def _is_image(hdu) -> bool:
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def read_fits(path: str, chunk_frames: int = 64, limits: Limits = Limits()) -> Iterator[Record]:
    """Frames of every 2-D image HDU and every plane of each 3-D cube; BSCALE/BZERO/BLANK applied by astropy.
    Every HDU's declared frame size and the file's declared bytes so far are checked against ``limits``
    before its data is read or inflated (a 1 MB .fits.gz declaring 1 GiB is refused from its header)."""
    if why := regular_file_problem(path):  # a FIFO named x.fits would block open() forever
        yield Problem(path, "", -1, why)
        return
    try:  # a broken link, a vanished file or one without read permission: say so instead of crashing
        size = os.path.getsize(path)
        open(path, "rb").close()
    except OSError as exc:
        yield Problem(path, "", -1, f"cannot open: {exc.strerror or _one_line(exc)}")
        return
    if size == 0:
        yield Problem(path, "", -1, "empty file (0 bytes)")
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
                    info = hdul.fileinfo(i)
                    end = info["datLoc"] + info["datSpan"]  # bytes the file declares up to this HDU's end
                    if why := (bytes_problem(end, size, limits, f"up to HDU {i}, the file") if gzipped else None) \
                            or (bytes_problem(hdu.size, size, limits, f"HDU {i}")
                                if isinstance(hdu, fits.CompImageHDU) else None):
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
                    if not (gzipped or isinstance(hdu, fits.CompImageHDU)) and hdu.size > size:
                        yield Problem(path, key, -1, f"truncated: HDU {i} declares {hdu.size} data "
                                                     f"bytes but the file has {size}")
                        continue
                    if why := frame_problem(*shape[-2:], limits, f"HDU {i}"):
                        yield Problem(path, key, -1, why)
                        return
                    header = {c: hdu.header[c] for c in HEADER_CARDS if c in hdu.header}
                    planes = shape[0] if len(shape) == 3 else 1
                    step = frames_per_read(shape[-1] * shape[-2], chunk_frames, limits)
                    for start in range(0, planes, step):
                        try:
                            block = hdu.section[start:start + step] if len(shape) == 3 else hdu.data[None]
                        except (ValueError, IndexError, TypeError) as exc:
                            if not isinstance(hdu, fits.CompImageHDU):
                                raise
                            yield Problem(path, key, -1, f"HDU {i}: compressed tile data missing or truncated "
                                                         f"for its declared {shape} image ({_one_line(exc)})")
                            break
                        block = _float_frames(block)
                        yield Block(path, key, start, block, np.full(len(block), -1), header)
    except Exception as exc:  # noqa: BLE001 - quarantine anything astropy cannot read
        yield Problem(path, "", -1, f"unreadable FITS: {_one_line(exc)}")
        return
    if images == 0:
        yield Problem(path, "", -1, "no image data (header only or table HDUs only)")


def read_hdf5(unit: Unit, chunk_frames: int = 64, labels_name: str | None = None,
              limits: Limits = Limits()) -> Iterator[Record]:
    """Frames ``unit.start:unit.stop`` of an HDF5 dataset, read in chunks of at most ``chunk_frames`` frames
    and ``limits.max_read_bytes`` bytes; (N,C,H,W) is averaged over C."""
    try:
        with h5py.File(unit.source, "r") as f:
            ds = f[unit.key]
            if labels_name and hdf5_link_problem(f, labels_name):  # missing, or another file's: no labels
                labels_name = None
            labels = f[labels_name] if labels_name else None
            if labels is not None and (not isinstance(labels, h5py.Dataset) or hdf5_storage_problem(labels)):
                labels = None
            if labels is not None and (labels.ndim != 1 or labels.shape[0] != ds.shape[0]):
                labels = None
            attrs = {k: (v.decode(errors="replace") if isinstance(v, bytes) else v)
                     for k, v in ds.attrs.items() if np.ndim(v) == 0}
            step = frames_per_read(int(np.prod(ds.shape[1:])), chunk_frames, limits)
            for start in range(unit.start, unit.stop, step):
                stop = min(unit.stop, start + step)
                block = _float_frames(ds[start:stop])
                if block.ndim == 4:
                    block = block.mean(axis=1)
                lab = np.asarray(labels[start:stop], dtype=np.int64) if labels is not None else np.full(stop - start, -1)
                yield Block(unit.source, unit.key, start, block, lab, attrs)
    except Exception as exc:  # noqa: BLE001
        yield Problem(unit.source, unit.key, unit.start, f"unreadable HDF5: {_one_line(exc)}")
