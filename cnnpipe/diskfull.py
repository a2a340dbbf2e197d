"""A full disk, said in one line: which output could not be written and that the device has no space left.

Libraries report ENOSPC in their own words (h5py: ``Can't close file (file write failed: ... errno = 28
...)``; torch's zip writer: ``[enforce fail at inline_container.cc:672] ...``; pyarrow: ``Error writing
bytes to file``). :func:`atomic_path` turns any of them into :class:`DiskFull`, an ``OSError`` with errno
ENOSPC and the output's path, which the CLI prints as ``error: No space left on device: <path>`` (exit 1).
"""
from __future__ import annotations

import errno
import os
import sys

_WORDS = ("no space left on device", "errno = 28", "[errno 28]", "disk quota exceeded")


class DiskFull(OSError):
    """No space left on the device holding ``filename`` (the output that could not be written)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def is_disk_full(exc: BaseException) -> bool:
    """Does this exception (of any library) come from a full disk or an exhausted quota?"""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(w in str(exc).lower() for w in _WORDS)


def quiet_teardown() -> None:
    """After a failed write h5py reports each of its handles' failed flush as a traceback while they are
    freed (Cython prints it through ``sys.excepthook``, then ``sys.unraisablehook``); the one line from
    :class:`DiskFull` has said it all, so those two hooks drop disk-full errors and pass the rest on."""
    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

    def on_exception(kind, value, tb) -> None:
        if not is_disk_full(value):
            excepthook(kind, value, tb)

    def on_unraisable(unraisable) -> None:
        if unraisable.exc_value is None or not is_disk_full(unraisable.exc_value):
            unraisablehook(unraisable)

    sys.excepthook, sys.unraisablehook = on_exception, on_unraisable
