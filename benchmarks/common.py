"""Helpers for the benchmark scripts: best-of-n timing and a results line printer."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of ``repeat`` calls (seconds): the least disturbed by the other core's load."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 5, warmup: bool = True) -> dict[str, float]:
    """Median wall time (s) of each function over ``rounds`` rounds, the functions called in turn within a
    round (A B A B ...), so the other users' load on this shared machine falls on all of them alike."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def report(name: str, ours: float, baseline: float, unit: str, goal: float) -> str:
    """One line: both rates and their ratio, with whether the goal ratio is met."""
    ratio = ours / baseline
    line = (f"{name:<34} cnnpipe {ours:12.1f} {unit}   baseline {baseline:12.1f} {unit}   "
            f"ratio {ratio:6.2f}x  (goal >= {goal}x: {'met' if ratio >= goal else 'NOT met'})")
    print(line, flush=True)
    return line


# ---- running the real workflow (e2e, scale, quality) -----------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def run_workflow(workdir, cfg: dict, cores: int = 2, timeout: int = 3600) -> float:
    """``snakemake --cores N`` with the repo's Snakefile in ``workdir`` with ``cfg``; wall seconds.

    Exits with Snakemake's output tail when the run fails: a benchmark of a failed run means nothing.
    """
    import os
    import subprocess
    import sys

    import yaml

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bench.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "bench.yaml"), "--cores", str(cores), "--workflow-profile", "none"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"snakemake failed in {workdir}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall


def rule_benchmarks(workdir):
    """Snakemake's per-job benchmark files under results/benchmarks/ as one table:
    rule, job (shard file or rule), s (wall seconds), max_rss (MB), cpu_time."""
    import pandas as pd

    root = Path(workdir) / "results" / "benchmarks"
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        rel = tsv.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else tsv.stem
        t = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": rule, "job": str(rel.with_suffix("")), "s": float(t.s.iloc[-1]),
                     "sampled_rss": float(t.max_rss.iloc[-1]) if str(t.max_rss.iloc[-1]) != "-" else float("nan"),
                     "max_rss": float(t.max_rss.iloc[-1]) if str(t.max_rss.iloc[-1]) != "-" else float("nan"),
                     "cpu_time": float(t.cpu_time.iloc[-1])})
    df = pd.DataFrame(rows)
    # Snakemake samples RSS each second for 30 s, then every 30 s: a job's peak can fall between samples.
    # cnnpipe logs its exact peak (getrusage) at exit; take the larger of the two.
    exact = log_peaks(workdir)
    df["max_rss"] = [max(r, exact[j]) if j in exact and r == r else exact.get(j, r) for r, j in zip(df.max_rss, df.job)]
    return df


def log_peaks(workdir):
    """Peak RSS (MB) each cnnpipe job wrote as its last log line ("peak RSS N MB"), keyed like
    ``rule_benchmarks``' job column (logs/ingest/shard-0.log -> ingest/shard-0)."""
    import re

    root = Path(workdir) / "logs"
    out = {}
    for log in root.rglob("*.log"):
        found = re.findall(r"peak RSS (\d+) MB", log.read_text(errors="replace"))
        if found:
            out[str(log.relative_to(root).with_suffix(""))] = float(found[-1])
    return out


def per_rule(bench):
    """Per rule: jobs, summed and longest job time, largest max_rss over its jobs."""
    return bench.groupby("rule", sort=False).agg(jobs=("s", "size"), total_s=("s", "sum"), max_job_s=("s", "max"),
                                                 max_rss_mb=("max_rss", "max"))
