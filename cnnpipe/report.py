"""The HTML anomaly report: one self-contained page that a person opens first.

Reads exactly the files the report rule declares (:class:`ReportInputs`) and the Snakemake benchmarks folder
it is given; renders ``templates/report.html.j2`` with jinja2 (autoescape on: every string from an input file
is HTML-escaped). Images are PNG data URIs and the one script is inline, pinned by a Content-Security-Policy
hash, so the page opens from disk with no network. The pictures are drawn by :mod:`cnnpipe.figures`.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import jinja2
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from . import components, report_where
from .atomic import atomic_path
from .config import Config
from .errors import UserError
from .population import pooled_populations
from .figures import (MASK_COLOUR, data_uri, fmt_num, fmt_seconds, gallery_images, latent_map_png,
                      latent_map_svg, message_png, training_curves_png)
from .tables import read_table

log = logging.getLogger("cnnpipe")

TEMPLATES = Path(__file__).with_name("templates")
BASE_COLUMNS = ("source", "key", "index", "frame", "score", "rank", "label", "pooled",  # ids and bookkeeping,
                "tiles", "shard", "row", "y0", "x0", "height", "width", *report_where.SKY_COLUMNS)  # not scores
PACKAGES = ("cnnpipe", "torch", "numpy", "astropy", "h5py", "snakemake")


@dataclass
class ReportInputs:
    """The files the report reads, as the rule declares them. Only ``anomalies`` and ``manifest`` must
    exist; a missing optional file is said so on the page."""
    anomalies: Path
    manifest: Path
    by_frame: Path | None = None
    gallery: Path | None = None
    latent_map: Path | None = None
    metrics: dict[str, Path] = field(default_factory=dict)    # model kind -> metrics CSV
    generated: dict[str, Path] = field(default_factory=dict)  # "samples" / "interpolation" -> PNG
    benchmarks: Path | None = None                             # folder of Snakemake benchmark TSVs
    where: dict[str, Path] = field(default_factory=dict)      # "frame_maps" / "labels" (report_where)


@dataclass
class Figures:
    """PNG files written beside the page (Snakemake's ``report()`` collects them)."""
    latent_map: bytes
    training_curves: bytes


def component_columns(df: pd.DataFrame) -> list[str]:
    """Numeric component-score columns: the component table's first, in its order, then any others."""
    numeric = [c for c in df.columns if c not in BASE_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
    known = [c for c in components.names() if c in numeric]
    return known + [c for c in numeric if c not in known]


def _read_optional(path: Path | None) -> pd.DataFrame | None:
    return read_table(path) if path is not None and Path(path).exists() else None


def ident(source: Any, key: Any, index: Any) -> tuple[str, str, int]:
    """The (source, key, index) triple that names a frame or tile everywhere downstream."""
    return str(source), str(key), int(index)


def read_gallery(path: Path | None) -> dict[str, np.ndarray] | None:
    """All datasets of ``gallery.h5`` (strings decoded), or None when the file is absent."""
    if path is None or not Path(path).exists():
        return None
    with h5py.File(path, "r") as f:
        out = {}
        for name in ("input", "sobel", "recon", "residual", "corner", "orientation", "index", "rank"):
            out[name] = f[name][()]
        for name in ("source", "key"):
            out[name] = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in f[name][()]],
                                 dtype=object)
    return out


def run_time(root: Path | None) -> tuple[float | None, list[tuple[str, float]]]:
    """Total wall time (sum of the ``s`` column of every Snakemake benchmark under ``root``) and the time
    per step (the first folder below ``root``, or the file's name)."""
    steps: dict[str, float] = {}
    root = Path(root) if root is not None else None
    for tsv in sorted(root.rglob("*.tsv")) if root is not None and root.is_dir() else []:
        try:
            s = float(pd.read_csv(tsv, sep="\t")["s"].sum())
        except (KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        rel = tsv.relative_to(root)
        step = rel.parts[0] if len(rel.parts) > 1 else tsv.stem
        steps[step] = steps.get(step, 0.0) + s
    if not steps:
        return None, []
    return sum(steps.values()), sorted(steps.items(), key=lambda kv: -kv[1])


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions (from package metadata, without importing the packages)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def parse_header(text: Any) -> dict[str, str]:
    """The manifest's ``header`` JSON as a dict of strings ({} for blank or unparseable text)."""
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        return {"header": text}
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {"header": str(d)}


def _summary(manifest: pd.DataFrame) -> dict:
    ok = manifest[manifest["status"] == "ok"]
    q = manifest[manifest["status"] != "ok"]
    inputs = []
    for source, g in manifest.groupby("source", sort=True):
        good = g[g["status"] == "ok"]
        frames = good.drop_duplicates(["key", "frame"]) if "frame" in good else good
        inputs.append({"source": source, "hdus": good["key"].nunique(), "frames": len(frames),
                       "tiles": len(good), "quarantined": int((g["status"] != "ok").sum())})
    frames = ok.drop_duplicates(["source", "key", "frame"]) if "frame" in ok else ok
    quarantined = [{"source": str(r.source), "key": "" if pd.isna(r.key) else str(r.key),
                    "reason": "" if pd.isna(r.reason) else str(r.reason)} for r in q.itertuples()]
    return {"inputs": inputs, "n_inputs": manifest["source"].nunique(), "n_frames": len(frames),
            "n_tiles": len(ok), "quarantined": quarantined,
            "n_quarantined_files": q["source"].nunique()}


def _table(df: pd.DataFrame, comps: list[str], cap: int, top_k: int, id_cols: list[str]) -> dict:
    rows = []
    for r in df.head(cap).itertuples(index=False):
        d = r._asdict()
        rows.append({"ids": [str(d[c]) for c in id_cols], "rank": int(d["rank"]),
                     "score": fmt_num(d["score"]), "score_v": float(d["score"]),
                     "comps": [(fmt_num(d[c]), "" if pd.isna(d[c]) else repr(float(d[c]))) for c in comps],
                     "label": "" if pd.isna(d.get("label", np.nan)) else str(d.get("label")),
                     "in_gallery": int(d["rank"]) <= top_k})
    return {"id_cols": id_cols, "comps": comps, "rows": rows, "total": len(df), "capped": len(df) > cap,
            "has_label": "label" in df.columns}


def _gallery(gal: dict | None, anomalies: pd.DataFrame, manifest: pd.DataFrame, comps: list[str],
             top_k: int, tile: int) -> list[dict]:
    """Gallery cards, joined to the ranked table by rank and to the manifest by (source, key, index)."""
    if gal is None:
        return []
    pos = {int(r): n for n, r in enumerate(anomalies["rank"])}
    pct = {c: pd.Series(components.departure(c, anomalies[c].to_numpy())).rank(pct=True).to_numpy() for c in comps}
    ok = manifest[manifest["status"] == "ok"]
    dup = ok.duplicated(["source", "key", "index"]).sum()
    if dup:
        log.warning("manifest: %d rows repeat a (source, key, index) id; gallery headers use the first", dup)
    meta = {}
    for r in ok.itertuples():
        meta.setdefault(ident(r.source, r.key, r.index), r)
    cards = []
    for g in np.argsort(gal["rank"], kind="stable")[:top_k]:
        rank = int(gal["rank"][g])
        key = ident(gal["source"][g], gal["key"][g], gal["index"][g])
        n, m = pos.get(rank), meta.get(key)
        row = anomalies.iloc[n] if n is not None else None
        if row is not None and ident(row["source"], row["key"], row["index"]) != key:
            log.warning("gallery rank %d is %s but anomalies.csv says %s", rank, key,
                        ident(row["source"], row["key"], row["index"]))
        comp_rows = []
        for c in comps:
            v = row[c] if row is not None else np.nan
            comp_rows.append({"name": c, "help": components.description(c), "value": fmt_num(v),
                              "pct": None if pd.isna(v) else round(float(pct[c][n]) * 100)})
        label = row.get("label", np.nan) if row is not None else np.nan
        where = report_where.card_where(m, tile) if m is not None else None
        cards.append({"rank": rank, "source": key[0], "key": key[1], "index": key[2],
                      "score": fmt_num(row["score"]) if row is not None else "",
                      "label": "" if pd.isna(label) else str(label), "components": comp_rows,
                      "header": parse_header(m.header) if m is not None else {}, "where": where,
                      "images": gallery_images(gal["input"][g], gal["sobel"][g], gal["recon"][g],
                                               gal["residual"][g], gal["corner"][g], gal["orientation"][g])})
    return cards


def _metrics_summary(df: pd.DataFrame | None) -> dict | None:
    if df is None or not len(df):
        return None
    last = df.iloc[-1]
    cols = [c for c in df.columns if c != "epoch" and pd.api.types.is_numeric_dtype(df[c])]
    best = None
    if "val_loss" in df and df["val_loss"].notna().any():
        i = df["val_loss"].idxmin()
        best = {"epoch": int(df.loc[i, "epoch"]) if "epoch" in df else int(i) + 1,
                "val_loss": fmt_num(df.loc[i, "val_loss"])}
    return {"epochs": len(df), "last": [(c, fmt_num(last[c])) for c in cols], "best": best}


def _paths(inputs: ReportInputs) -> dict:
    """How the page names the optional files it found missing."""
    name = lambda p, what: str(p) if p is not None else f"no {what} given"  # noqa: E731
    return {"gallery": name(inputs.gallery, "gallery"), "latent_map": name(inputs.latent_map, "latent map"),
            "metrics": {m: str(p) for m, p in inputs.metrics.items()},
            "samples": name(inputs.generated.get("samples"), "samples"),
            "interpolation": name(inputs.generated.get("interpolation"), "interpolation"),
            "benchmarks": name(inputs.benchmarks, "benchmarks folder")}


def build_context(inputs: ReportInputs, cfg: Config) -> tuple[dict, Figures]:
    """Everything the template shows, from the files in ``inputs`` and the parsed config."""
    missing = [str(p) for p in (inputs.anomalies, inputs.manifest) if not Path(p).exists()]
    if missing:
        raise UserError(f"report needs {', '.join(missing)}: run the scoring steps first (snakemake rank)")
    top_k, table_rows = cfg.report.top_k, cfg.report.table_rows
    anomalies = read_table(inputs.anomalies).sort_values("rank", kind="stable").reset_index(drop=True)
    manifest = read_table(inputs.manifest)
    by_frame = _read_optional(inputs.by_frame)
    latent = _read_optional(inputs.latent_map)
    metrics = {m: _read_optional(p) for m, p in sorted(inputs.metrics.items())}  # a model not trained: absent
    comps = component_columns(anomalies)
    gallery = _gallery(read_gallery(inputs.gallery), anomalies, manifest, comps, top_k, cfg.ingest.tile_size)
    total, steps = run_time(inputs.benchmarks)
    lm_png = latent_map_png(latent, top_k) if latent is not None and len(latent) else \
        message_png(f"no latent map ({inputs.latent_map}) found")
    curves_png = training_curves_png(metrics)
    generated = {name: data_uri(Path(p).read_bytes()) if p is not None and Path(p).exists() else None
                 for name, p in ((n, inputs.generated.get(n)) for n in ("samples", "interpolation"))}
    frame_table = None
    if by_frame is not None and len(by_frame) and len(by_frame) < len(anomalies):
        ids = ["source", "key", "frame"] + (["tiles"] if "tiles" in by_frame else [])
        frame_table = _table(by_frame.sort_values("rank", kind="stable"), component_columns(by_frame),
                             table_rows, 0, ids)
    ctx = {
        "generated_at": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "summary": _summary(manifest),
        "n_ranked": len(anomalies),
        "top_score": fmt_num(anomalies["score"].iloc[0]) if len(anomalies) else "",
        "runtime": fmt_seconds(total), "runtime_steps": [(s, fmt_seconds(v)) for s, v in steps],
        "config": yaml.safe_dump(cfg.raw, sort_keys=False, default_flow_style=False, width=100),
        "versions": package_versions(),
        "components": [(c, components.description(c)) for c in comps],
        "gallery": gallery, "top_k": top_k,
        "table": _table(anomalies, comps, table_rows, len(gallery), ["source", "key", "index"]),
        "frame_table": frame_table,
        "pooled": pooled_populations(anomalies, manifest), "min_population": cfg.score.min_population,
        "latent": latent_map_svg(latent, len(gallery) or top_k) if latent is not None and len(latent) else None,
        "latent_png": data_uri(lm_png),
        "curves_png": data_uri(curves_png),
        "metrics": {m: _metrics_summary(df) for m, df in metrics.items()},
        "paths": _paths(inputs),
        "generated": generated,
        "mask_colour": MASK_COLOUR,
    }
    ctx.update(report_where.context(ctx, anomalies, by_frame, manifest, inputs.where, cfg.ingest.tile_size))
    return ctx, Figures(latent_map=lm_png, training_curves=curves_png)


def render(ctx: dict) -> str:
    """The page's HTML: the template with autoescape on, the script inlined and pinned by its CSP hash."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    script = (TEMPLATES / "report.js").read_text()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return env.get_template("report.html.j2").render(
        **ctx, script=Markup(script), script_hash=f"sha256-{digest}")


def write_report(inputs: ReportInputs, out: str | Path, cfg: Config) -> Path:
    """Write ``out`` (the page) and the figure PNGs beside it (latent_map.png, training_curves.png)."""
    out = Path(out)
    ctx, figs = build_context(inputs, cfg)
    html = render(ctx)
    for name, png in (("latent_map.png", figs.latent_map), ("training_curves.png", figs.training_curves)):
        with atomic_path(out.parent / name) as tmp:
            tmp.write_bytes(png)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out
