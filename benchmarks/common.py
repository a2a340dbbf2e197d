"""Helpers for the benchmark scripts: best-of-n timing and a results line printer."""
from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of ``repeat`` calls (seconds): the least disturbed by the other core's load."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report(name: str, ours: float, baseline: float, unit: str, goal: float) -> str:
    """One line: both rates and their ratio, with whether the goal ratio is met."""
    ratio = ours / baseline
    line = (f"{name:<34} cnnpipe {ours:12.1f} {unit}   baseline {baseline:12.1f} {unit}   "
            f"ratio {ratio:6.2f}x  (goal >= {goal}x: {'met' if ratio >= goal else 'NOT met'})")
    print(line, flush=True)
    return line
