"""Resource limits per input and the rule that an input reads only itself.

A hostile or broken input must cost a bounded amount of memory, time and disk, and must never make cnnpipe
read another file. The readers ask these functions before they read: each returns a one-line reason (the
file is quarantined with it) or ``None``. Limits come from ``ingest.limits`` in the config.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import stat
from dataclasses import dataclass

import h5py


@dataclass(frozen=True)
class Limits:
    """``ingest.limits``: what one input may cost (see config/README.md)."""

    max_frame_pixels: int = 2 ** 24
    max_file_bytes: int = 2 ** 31
    max_read_bytes: int = 2 ** 28
    min_frame_side: int = 8


def frame_problem(height: int, width: int, limits: Limits, what: str) -> str | None:
    """Refuse frames too large to hold in memory or too small to carry any structure.

    ``max_frame_pixels`` bounds one frame (it is read whole); ``min_frame_side``: a frame narrower than that is
    almost all interpolation (or padding) once it is resampled (or padded) to a tile, so a (20000, 1, 1) cube
    would become 20000 tiles (a shard thousands of times the input's size) with nothing for the Sobel filter
    or the models to see.
    """
    if height * width > limits.max_frame_pixels:
        return (f"{what} declares {height}x{width} = {height * width} pixels per frame, more than "
                f"ingest.limits.max_frame_pixels ({limits.max_frame_pixels})")
    if min(height, width) < limits.min_frame_side:
        return (f"{what} has {height}x{width} pixel frames, smaller than ingest.limits.min_frame_side "
                f"({limits.min_frame_side}): too small to tile")
    return None


def bytes_problem(declared: int, on_disk: int, limits: Limits, what: str) -> str | None:
    """Refuse an input that expands beyond its own size by more than ``max_file_bytes``.

    A file may always yield as many bytes as it holds (a 20 GB uncompressed HDF5 file is fine); compression,
    unwritten HDF5 chunks (read as the fill value) or a header promising more data than present may not
    make it yield more than ``max_file_bytes``.
    """
    if declared > max(limits.max_file_bytes, on_disk):
        return (f"{what} declares {declared} bytes of data from {on_disk} bytes on disk, more than "
                f"ingest.limits.max_file_bytes ({limits.max_file_bytes})")
    return None


def frames_per_read(frame_pixels: int, chunk_frames: int, limits: Limits) -> int:
    """Frames read at once: at most ``chunk_frames`` and at most ``max_read_bytes`` at 8 bytes a pixel
    (the widest pixel type; at least one frame)."""
    return max(1, min(chunk_frames, limits.max_read_bytes // max(8 * frame_pixels, 1)))


_KINDS = {stat.S_ISFIFO: "a named pipe", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
          stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}


def not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read (it is not a regular file), or None."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")
    return f"{kind}, not a regular file: not opened"


def regular_file_problem(path: str) -> str | None:
    """Check ``path`` with stat only (never open: opening a FIFO blocks until a writer comes)."""
    try:
        return not_regular(os.stat(path).st_mode)
    except OSError as exc:
        return f"cannot open: {exc.strerror or exc}"


# ---- FITS: astropy reads only as far as the headers declare ------------------------------------------
#: bytes astropy may read looking for the next header after the last declared HDU (10k+ cards)
HEADER_BYTES = 2 ** 24


class ReadPastLimit(Exception):
    """A read or seek beyond what the file's headers declared (not an OSError: astropy must not take it
    for the end of the file)."""


class BoundedReader(io.RawIOBase):
    """A binary file (gzip-inflated when its name ends in .gz) that refuses to read past ``limit``.

    astropy looks for a header after every HDU by reading 2880-byte blocks until it finds an END card: a
    gzip stream of zeros after a small image (1 MB on disk, 1 GiB inflated) kept it reading for minutes
    and took 2 GB. The reader raises ``limit`` to the end of each HDU it accepts, plus HEADER_BYTES.
    Seeks only move a position: a gzip stream is inflated up to it when (and if) a read follows, so
    skipping a declared but refused HDU costs nothing.
    """

    def __init__(self, path: str, limit: int = HEADER_BYTES):
        super().__init__()
        self.name, self.mode, self.limit = path, "rb", limit
        self._f = gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or self._pos + size > self.limit:
            raise ReadPastLimit(f"more data than its headers declare (reading stopped at byte {self.limit})")
        if self._f.tell() != self._pos:
            self._f.seek(self._pos)
        data = self._f.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END:  # astropy asks for the size this way; a gzip stream's is unknown
            self._pos = 2 ** 62 if isinstance(self._f, gzip.GzipFile) else os.fstat(self._f.fileno()).st_size + offset
        else:
            self._pos = offset + (self._pos if whence == os.SEEK_CUR else 0)
        return self._pos

    def close(self) -> None:
        self._f.close()
        super().close()


def gzip_primary_problem(raw: BoundedReader, size: int, limits: Limits) -> str | None:
    """Check a .fits.gz file's primary HDU from its header alone, then let ``raw`` read up to its end.

    Needed before astropy opens the file: opening reads the first extension's header too, i.e. inflates
    all of the primary HDU's data to reach it."""
    from astropy.io import fits  # noqa: PLC0415 - only FITS needs it

    hdr = fits.Header.fromfile(raw)
    start = raw.tell()
    dims = [int(hdr.get(f"NAXIS{k}", 0)) for k in range(1, int(hdr.get("NAXIS", 0)) + 1)]
    count = math.prod(dims) if dims else 0
    nbytes = abs(int(hdr.get("BITPIX", 8))) // 8 * int(hdr.get("GCOUNT", 1)) * (int(hdr.get("PCOUNT", 0)) + count)
    raw.seek(0)
    if len(dims) >= 2 and (why := frame_problem(dims[1], dims[0], limits, "HDU 0")):
        return why
    if why := bytes_problem(start + nbytes, size, limits, "HDU 0"):
        return why
    raw.limit = start + -(-nbytes // 2880) * 2880 + HEADER_BYTES
    return None


# ---- HDF5: an input must never make h5py open another file --------------------------------------------
def hdf5_link_problem(f: h5py.File, name: str, depth: int = 0) -> str | None:
    """Walk ``name`` one path component at a time without following external links; follow soft links
    (inside the file) up to 16 deep. Returns why the path cannot be used, or None."""
    if depth > 16:
        return f"'{name}': more than 16 soft links deep"
    path = ""
    for part in [p for p in name.split("/") if p]:
        path += "/" + part
        try:
            link = f.get(path, getlink=True)
        except (KeyError, OSError, RuntimeError, TypeError):
            link = None
        if link is None:
            return f"no dataset '{name}'"
        if isinstance(link, h5py.ExternalLink):
            return (f"'{path}' is an external link to {link.filename}:{link.path}; "
                    "an input is read only from itself (copy the data into the file)")
        if isinstance(link, h5py.SoftLink):
            target = link.path if link.path.startswith("/") else path.rsplit("/", 1)[0] + "/" + link.path
            rest = name.strip("/")[len(path.strip("/")):]
            return hdf5_link_problem(f, target + rest, depth + 1)
    return None


def hdf5_external_links(f: h5py.File) -> list[str]:
    """``name -> file:path`` of every external link in the file (listed, never followed)."""
    found: list[str] = []

    def visit(name: str, link) -> None:
        if isinstance(link, h5py.ExternalLink):
            found.append(f"/{name} -> {link.filename}:{link.path}")
    f.visititems_links(visit)
    return found


def hdf5_storage_problem(ds: h5py.Dataset) -> str | None:
    """Refuse datasets whose pixels live in other files: virtual datasets and external raw storage."""
    if ds.is_virtual:
        return (f"dataset '{ds.name}' is a virtual dataset mapping other files; "
                "an input is read only from itself")
    plist = ds.id.get_create_plist()
    n = plist.get_external_count()
    if n:
        names = ", ".join(plist.get_external(i)[0].decode(errors="replace") for i in range(min(n, 3)))
        return (f"dataset '{ds.name}' keeps its data in {n} external file(s) ({names}); "
                "an input is read only from itself")
    if ds.chunks and ds.nbytes and ds.id.get_storage_size() == 0:
        return (f"dataset '{ds.name}' declares {ds.shape} but none of its chunks is written "
                "(every frame would be the fill value)")
    return None
