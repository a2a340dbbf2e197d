"""Seconds Snakemake needs to build the DAG for many input files (`snakemake -n`), against a 1-file run.

Input files are empty placeholders (`.fits` names in 10 folders): only DAG building is measured, nothing is
read. The baseline run with one file measures what every run pays anyway (Python and Snakemake start-up,
parsing the Snakefile); the difference is the cost of the inputs. Goal: the DAG for 10k files in a few
seconds (issue 6), and no growth with the number of shards.
Run: python benchmarks/dag.py [--files 10000] [--shards 4]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def make_inputs(d: Path, n: int) -> None:
    """n empty `.fits` files spread over 10 folders (a survey's nightly folders)."""
    for i in range(n):
        sub = d / f"night{i % 10:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"frame{i:06d}.fits").touch()


def copy_workflow(dest: Path) -> None:
    dest.mkdir()
    for name in ("Snakefile", "workflow", "config"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)


def dry_run(workdir: Path, inputs: Path, shards: int) -> tuple[float, int]:
    """Wall seconds of `snakemake -n` and the number of jobs it planned."""
    (workdir / "bench.yaml").write_text(json.dumps({"inputs": [str(inputs)], "ingest": {"n_shards": shards}}))
    t0 = time.perf_counter()
    out = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", "--workflow-profile", "none",
                          "--configfile", "bench.yaml"], cwd=workdir, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"snakemake -n failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    total = [line.split()[-1] for line in out.stdout.splitlines() if line.startswith("total")]
    return wall, int(total[-1]) if total else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--shards", type=int, nargs="+", default=[4])
    ap.add_argument("--goal", type=float, default=3.0, help="seconds allowed for the inputs' DAG cost")
    a = ap.parse_args()
    env_path = f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["PATH"] = env_path
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "many").mkdir()
        (t / "one").mkdir()
        t0 = time.perf_counter()
        make_inputs(t / "many", a.files)
        make_inputs(t / "one", 1)
        print(f"made {a.files} placeholder files in {time.perf_counter() - t0:.1f} s", flush=True)
        copy_workflow(t / "wf")
        for shards in a.shards:
            base, _ = dry_run(t / "wf", t / "one", shards)
            wall, jobs = dry_run(t / "wf", t / "many", shards)
            cost = wall - base
            print(f"DAG for {a.files} files, {shards} shards ({jobs} jobs): snakemake -n {wall:.1f} s, "
                  f"1-file baseline {base:.1f} s -> inputs cost {cost:.1f} s "
                  f"(goal <= {a.goal} s: {'met' if cost <= a.goal else 'NOT met'})", flush=True)


if __name__ == "__main__":
    main()
