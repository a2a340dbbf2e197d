"""Run every benchmark script once and write benchmarks/RESULTS.md from that one run (``make bench``).

Each script runs in its own process, one after another (they time themselves; running two at once would
make both wrong). The page records the date, the machine (cores, torch version, CUDA device or CPU) and the
git commit every figure was measured at (``-dirty`` when the tree had uncommitted changes): all figures on
the page come from this one run at that one commit. A hand-written ``## Analysis`` section already in
RESULTS.md is kept only when it was written for the same commit (it discusses those numbers).
Run: python benchmarks/run_all.py [--only preprocess ingest ...]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: script -> (title, extra arguments); the order of the page
SCRIPTS = {
    "preprocess": ("Preprocessing: Sobel + max-pool vs scikit-image", []),
    "ingest": ("Ingest: FITS vs naive astropy loop, HDF5 vs raw h5py", []),
    "train": ("Training loop vs bare torch loop; model GFLOP/s vs matmul", []),
    "score": ("Scoring vs bare model forward", []),
    "dag": ("Snakemake DAG for many input files", []),
    "e2e": ("End to end: snakemake --cores 2 on the demo", []),
    "scale": ("Scale: peak RSS and time at 4x, 10x, 40x the demo", []),
    "night": ("A night of survey frames: 8 x 4096^2 FITS, and 4x that, end to end", ["--scale", "4"]),
    "quality": ("Detection quality vs baselines (ground truth)", []),
    "checkerboard": ("Checkerboard in generated frames: transposed convolution vs resize-convolution", []),
}


def machine() -> str:
    import torch

    dev = (f"CUDA {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})" if torch.cuda.is_available()
           else "CPU only (no CUDA device)")
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}, {dev}; load average at start {load:.1f}")


def commit() -> str:
    """The commit the benchmarks run at, ``-dirty`` when tracked files differ from it; "unknown" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def stamp_of(page: str) -> str | None:
    """The commit a RESULTS.md page says it was measured at."""
    m = re.search(r"^Commit: `([^`]+)`", page, re.M)
    return m.group(1) if m else None


def run(name: str, extra: list[str]) -> tuple[str, float, int]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra], cwd=HERE, capture_output=True, text=True)
    text = out.stdout + (f"\n[stderr tail]\n{out.stderr[-2000:]}" if out.returncode else "")
    return text, time.perf_counter() - t0, out.returncode


def strip_json(text: str) -> str:
    """Drop the machine-readable JSON line each script ends with (kept in the raw outputs only)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("{", "[{"))).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="+", choices=list(SCRIPTS), help="run only these (the page lists only them)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    a = ap.parse_args()
    old = Path(a.out).read_text() if Path(a.out).exists() else ""
    at = commit()
    analysis = re.search(r"^## Analysis\n.*", old, re.S | re.M) if stamp_of(old) == at else None
    parts = [f"# cnnpipe benchmark results\n\nWritten by `python benchmarks/run_all.py` (`make bench`) on "
             f"{datetime.date.today().isoformat()}, in one run.\n\nCommit: `{at}`\n\nMachine: {machine()}.\n\n"
             "Every figure below was measured in that run, at that commit, by the script named, cnnpipe and "
             "its baseline side by side in the same process or "
             "run. The development machine is shared (other users' jobs run at the same time), so absolute "
             "times carry noise; ratios are measured interleaved to cancel most of it.\n"]
    failed = []
    for name, (title, extra) in SCRIPTS.items():
        if a.only and name not in a.only:
            continue
        print(f"running {name}.py ...", flush=True)
        text, secs, rc = run(name, extra)
        note = f"(`python benchmarks/{name}.py`, {secs:.0f} s{'' if rc == 0 else f', FAILED rc={rc}'})"
        if rc:
            failed.append(name)
        print(strip_json(text), flush=True)
        parts.append(f"## {title}\n\n{note}\n\n```\n{strip_json(text)}\n```\n")
    if analysis:
        parts.append(analysis.group(0).rstrip() + "\n")
    Path(a.out).write_text("\n".join(parts))
    print(f"wrote {a.out}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
