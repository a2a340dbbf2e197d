"""End-to-end ``snakemake --cores 2`` on the embedded demo (default config) in a fresh temporary folder.

Prints the wall time of the whole run and, per rule, jobs, summed job time, longest job and peak RSS from
Snakemake's ``benchmark:`` files (results/benchmarks/**/*.tsv). No baseline: this is the number a new user
waits for after ``make demo`` (goal from the brief: about 2 minutes on 2 cores).
Run: python benchmarks/e2e.py [--cores 2]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from common import REPO, per_rule, rule_benchmarks, run_workflow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--goal", type=float, default=180.0, help="seconds")
    a = ap.parse_args()
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        wall = run_workflow(Path(tmp), cfg, a.cores)
        table = per_rule(rule_benchmarks(tmp))
        frames = len(pd.read_csv(Path(tmp) / "results" / "anomalies_by_frame.csv"))
    print(f"end-to-end demo, snakemake --cores {a.cores}: {frames} frames ranked, wall {wall:.1f} s "
          f"(goal <= {a.goal:.0f} s: {'met' if wall <= a.goal else 'NOT met'}); sum of job times "
          f"{table.total_s.sum():.1f} s")
    for rule, r in table.iterrows():
        print(f"  {rule:<11} {int(r.jobs):2d} job(s)  total {r.total_s:6.1f} s  longest {r.max_job_s:6.1f} s  "
              f"peak RSS {r.max_rss_mb:6.0f} MB")
    print(json.dumps({"wall_s": wall, "rules": table.reset_index().to_dict("records")}))


if __name__ == "__main__":
    main()
