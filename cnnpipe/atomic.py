"""Write-then-rename, so an interrupted step never leaves a half-written output behind."""
from __future__ import annotations

import contextlib
import errno
import glob
import os
from pathlib import Path
from typing import Iterator

from .diskfull import DiskFull, is_disk_full


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temp name keeps the suffix (``x.tmp-123.h5``) so libraries that look at suffixes still work.
    Temp files of ``path`` left by killed runs are removed first (one job makes a given output at a time);
    a full disk, in whatever words the writing library says it, becomes :class:`DiskFull` naming ``path``.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file sits where the output folder should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(final.parent)) from None
    tmp = final.with_name(f"{final.stem}.tmp-{os.getpid()}{final.suffix}")
    for stale in final.parent.glob(f"{glob.escape(final.stem)}.tmp-*{glob.escape(final.suffix)}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(final) from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (and all it held)."""
    import shutil

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
