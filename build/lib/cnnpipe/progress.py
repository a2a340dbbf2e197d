"""Progress of long loops: a tqdm bar on a terminal, a few plain log lines otherwise (Snakemake logs).

A bar in a log file is noise (one carriage-return line per update), and silence in a log is worse: under
Snakemake stderr is a file, so the loop logs ``desc: done/total (pct%)`` at every tenth of the way instead.
"""
from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int, desc: str, log: logging.Logger, unit: str = "it",
             steps: int = 10, tty: bool | None = None) -> Iterator[T]:
    """Yield ``items``; show a tqdm bar when stderr is a terminal, else log ``steps`` evenly spaced lines.

    ``tty`` overrides the terminal check (tests).
    """
    if sys.stderr.isatty() if tty is None else tty:
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
        return
    marks = {max(1, round(total * k / steps)) for k in range(1, steps + 1)} if total > 0 else set()
    for done, item in enumerate(items, 1):
        yield item
        if done in marks:
            log.info("%s: %d/%d %s (%d%%)", desc, done, total, unit, round(100 * done / total))
