"""Find the input files behind the config's ``inputs`` entries (files, folders, globs), safely.

- Folders are walked with an explicit stack (a folder 1200 levels deep is no RecursionError) and each folder
  is entered once, by its device and inode, so symlink loops end; a file reached through several links or
  names is listed once.
- Only regular files are listed for reading; a named pipe, device or socket named like an input is listed
  with a reason and never opened (opening a FIFO blocks until someone writes to it).
- ``exclude``: folders the workflow writes (``results``, ``logs``...), never entered by a walk, so
  ``inputs: ["."]`` does not re-ingest the pipeline's own shards; an entry naming a path inside them is
  refused, except inside the ``keep`` folders (the demo data the workflow makes for itself).
"""
from __future__ import annotations

import fnmatch
import glob
import os
import stat
from typing import Callable, Iterable, Iterator

from .limits import not_regular

Kind = Callable[[str], "str | None"]


class _Outputs:
    """The workflow's own output folders: never entered by a walk (matched by device and inode, so any
    path or link to them counts); an entry naming a path inside them is refused unless it lies in ``keep``."""

    def __init__(self, exclude: Iterable[str], keep: Iterable[str]):
        self.ids = {(st.st_dev, st.st_ino) for st in map(_stat, exclude) if st is not None}
        self.exclude = [os.path.realpath(p) for p in exclude]
        self.keep = [os.path.realpath(p) for p in keep]

    @staticmethod
    def _within(path: str, roots: list[str]) -> bool:
        return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

    def owns(self, entry: str) -> bool:
        """Is this entry (a path given in the config) inside an output folder and not kept?"""
        if not self.exclude:
            return False
        real = os.path.realpath(entry)
        return self._within(real, self.exclude) and not self._within(real, self.keep)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def walk(root: str, outputs: _Outputs, kind: Kind,
         max_depth: int | None = None) -> Iterator[tuple[str, os.stat_result | None, str]]:
    """Yield ``(path, stat or None, problem)`` for every file under ``root`` whose name ``kind`` knows and
    every folder that cannot be listed; each folder is entered once (device, inode), output folders never."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[str, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield folder, None, f"cannot list folder: {exc.strerror or exc}"
            continue
        subfolders = []
        for e in entries:
            try:
                est = e.stat()  # follows symlinks: a link to a folder is walked, to a file is read
            except OSError as exc:
                if kind(e.name):
                    yield e.path, None, f"cannot open: {exc.strerror or exc}"
                continue
            if stat.S_ISDIR(est.st_mode):
                if (max_depth is None or depth < max_depth) and (est.st_dev, est.st_ino) not in outputs.ids:
                    subfolders.append(e.path)
            elif kind(e.name):
                yield e.path, est, ""
        stack += [(p, depth + 1) for p in reversed(subfolders)]


def _split_glob(pattern: str) -> tuple[str, list[str]]:
    """``data/*/x*.fits`` -> (``data``, [``*``, ``x*.fits``]): the fixed folder and the magic components."""
    parts = pattern.split(os.sep)
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    base = os.sep.join(parts[:fixed]) or ("." if not pattern.startswith(os.sep) else os.sep)
    return base, [p for p in parts[fixed:] if p]


def _match(parts: list[str], pattern: list[str]) -> bool:
    """Glob semantics on path components: ``**`` matches any number of folders; ``*`` skips dot-files."""
    if not pattern:
        return not parts
    head = pattern[0]
    if head == "**":
        return any(_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1)) and not any(
            p.startswith(".") for p in parts[:-1])
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match(parts[1:], pattern[1:])


def _path(found: tuple) -> str:
    return found[0]


def resolve(entries: list[str], kind: Kind, exclude: Iterable[str] = (), keep: Iterable[str] = (),
            unknown: str = "unknown file type", empty: str = "folder holds no input files") -> list[tuple[str, str]]:
    """Expand entries into ``(path, problem)`` pairs (problem '' = read it), each entry's files sorted,
    every file once (the first path that reaches it)."""
    outputs = _Outputs(exclude, keep)
    out: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()

    def add(path: str, st: os.stat_result | None, problem: str) -> None:
        if st is not None:
            if (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
            problem = problem or not_regular(st.st_mode) or ""
        out.append((path, problem))

    for entry in entries:
        found: list[tuple[str, os.stat_result | None, str]] = []
        magic = glob.has_magic(entry) and not os.path.lexists(entry)
        base, pattern = _split_glob(entry) if magic else (entry, [])
        if outputs.owns(base) and os.path.lexists(base):
            out.append((entry, "inside a folder this workflow writes its outputs to: not read as an input"))
            continue
        if magic:
            depth = None if "**" in pattern else len(pattern) - 1
            found = [(p, st, why or ("" if kind(p) else "unknown file type"))
                     for p, st, why in walk(base, outputs, lambda name: True, depth)
                     if _match(os.path.relpath(p, base).split(os.sep), pattern)]
            found = sorted(found, key=_path) or [(entry, None, "pattern matches no files")]
        elif os.path.isdir(entry):
            found = sorted(walk(entry, outputs, kind), key=_path) or [(entry, None, empty)]
        elif os.path.lexists(entry):
            try:
                st = os.stat(entry)
            except OSError as exc:
                found = [(entry, None, f"cannot open: {exc.strerror or exc}")]
            else:
                found = [(entry, st, "" if kind(entry) else unknown)]
        else:
            found = [(entry, None, "path does not exist")]
        for path, st, problem in found:
            add(path, st, problem)
    return out
