"""Read ahead in a background thread, so reading the next block overlaps computing on this one."""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield what ``items`` yields, in order, with up to ``depth`` of them produced ahead by a thread.

    File reads and NumPy conversions release the GIL, so they run while the caller computes. An exception
    in ``items`` is raised here; when the caller stops early (an error, ``close()``), the thread stops too.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put((x, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((_DONE, exc))

    thread = threading.Thread(target=produce, name="cnnpipe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            x, exc = q.get()
            if exc is not None:
                raise exc
            if x is _DONE:
                return
            yield x
    finally:
        stop.set()
        thread.join()
