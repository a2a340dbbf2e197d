"""The lines printed at the end of a successful run: where the report is and the top anomalies."""
from __future__ import annotations

import csv
from pathlib import Path


def top_anomalies_text(path: str | Path, n: int = 5) -> str:
    """The first ``n`` rows of a ranked anomalies CSV as an aligned text table (rank, score, source, key,
    index); an empty string when the file does not exist (e.g. a run that stopped before ranking)."""
    path = Path(path)
    if not path.is_file():
        return ""
    with path.open(newline="") as f:
        rows = [r for _, r in zip(range(n), csv.DictReader(f))]
    if not rows:
        return f"{path}: no ranked frames"
    lines = [f"top {len(rows)} anomalies ({path}):", f"{'rank':>5}  {'score':>9}  source [key] index"]
    for r in rows:
        lines.append(f"{r['rank']:>5}  {float(r['score']):9.3f}  {r['source']} [{r['key']}] {r['index']}")
    return "\n".join(lines)


def quarantine_text(manifest: str | Path, n: int = 3) -> str:
    """One line naming the quarantined inputs (the first ``n``, with reasons); empty when there are none."""
    path = Path(manifest)
    if not path.is_file():
        return ""
    with path.open(newline="") as f:
        bad = {}
        for r in csv.DictReader(f):
            if r["status"] == "quarantined":
                bad.setdefault(r["source"], r["reason"])
    if not bad:
        return ""
    named = "; ".join(f"{s}: {r}" for s, r in list(bad.items())[:n]) + ("; ..." if len(bad) > n else "")
    return f"{len(bad)} input(s) quarantined ({named}): fix or remove them from 'inputs'; all listed in {path}"


def run_summary(report: str | Path, anomalies: str | Path, manifest: str | Path | None = None, n: int = 5) -> str:
    """Where the report and the ranked list are, any quarantined inputs, then the top ``n`` anomalies."""
    parts = [f"cnnpipe: report {Path(report).resolve()}", f"ranked list {anomalies}"]
    parts += [t for t in (quarantine_text(manifest) if manifest else "", top_anomalies_text(anomalies, n)) if t]
    return "\n".join(parts)
