"""The HTML anomaly report: one self-contained page that a person opens first.

Reads only the scoring step's outputs (``anomalies.csv``, ``anomalies_by_frame.csv``, ``gallery.h5``,
``latent_map.csv``), the ingest ``manifest.csv``, the training metrics, the ``generate`` images and the
Snakemake benchmarks; renders ``templates/report.html.j2`` with jinja2 (autoescape on: every string that
comes from an input file is HTML-escaped). Images are PNG data URIs and the one script is inline, pinned
by a Content-Security-Policy hash, so the page opens from disk with no network and runs nothing else.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import jinja2
import matplotlib
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup
from PIL import Image

from .atomic import atomic_path
from .csvcells import restore
from .errors import UserError
from .population import population

matplotlib.use("Agg")
log = logging.getLogger("cnnpipe")
from matplotlib import colormaps  # noqa: E402  (after choosing the Agg backend)
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

TEMPLATES = Path(__file__).with_name("templates")
MASK_COLOUR = "#39ff14"  # masked (NaN) pixels: a green no colour map below uses
BASE_COLUMNS = ("source", "key", "index", "frame", "score", "rank", "label", "pooled",  # ids and bookkeeping,
                "tiles", "shard", "row", "y0", "x0", "height", "width")     # never component scores
COMPONENTS = {  # known component scores, in display order, with what they measure
    "recon": "VAE reconstruction error of the intensity (masked pixels ignored)",
    "recon_sobel": "VAE reconstruction error of the Sobel magnitude",
    "kl": "KL divergence of the latent posterior from the prior",
    "masked": "fraction of masked (NaN, padding) pixels",
    "sobel_peak": "the strongest Sobel edge",
    "sharpness": "brightest pixel above the median of its 8 neighbours, in noise units (cosmic-ray hits)",
    "coldness": "darkest pixel below the frame's median level, in noise units (dead pixels, bad columns)",
    "corner": "strongest corner against the usual corner strength at that pixel (kinks, displaced vertices)",
    "line": "brightest straight line across the frame, background subtracted (satellite trails)",
    "latent_knn": "distance to the k nearest training latents",
    "mahalanobis": "Mahalanobis distance to the latent distribution",
    "cnn": "CNN score (transform confidence / max-softmax / energy)",
}
PACKAGES = ("cnnpipe", "torch", "numpy", "astropy", "h5py", "snakemake")
MAX_MAP_POINTS = 5000  # points drawn in the interactive latent map (top-K always included)


# ---------------------------------------------------------------- arrays -> PNG

def colourise(a: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """Map a 2-D array to RGBA uint8 with ``cmap`` over [vmin, vmax]; NaN/inf pixels get MASK_COLOUR."""
    cm = colormaps[cmap].with_extremes(bad=MASK_COLOUR)
    masked = np.ma.masked_invalid(np.asarray(a, dtype=np.float64))
    return cm(Normalize(vmin, vmax, clip=True)(masked), bytes=True)


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an (H, W, 3|4) uint8 array as PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes, mime: str = "image/png") -> str:
    """``data:`` URI embedding ``png``, so the page needs no other file."""
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def robust_range(a: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    """Percentile range of the finite values (0, 1 when there are none or they are constant)."""
    finite = np.asarray(a, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    vmin, vmax = np.percentile(finite, [lo, hi])
    return (float(vmin), float(vmax)) if vmax > vmin else (float(vmin), float(vmin) + 1.0)


def gallery_images(inp: np.ndarray, sobel: np.ndarray, recon: np.ndarray, residual: np.ndarray,
                   corner: np.ndarray) -> dict:
    """The five thumbnails of one anomaly as data URIs.

    Input and reconstruction share the input's grey scale (so they compare by eye); the Sobel magnitude
    uses magma from 0; the residual a diverging map symmetric about 0; the corner map (response over the
    population's usual response) viridis from 0 to its maximum, so its brightest spot is the corner that
    made the ``corner`` score.
    """
    vmin, vmax = robust_range(inp)
    _, smax = robust_range(sobel, 0.0, 99.5)
    r = np.abs(np.asarray(residual, dtype=np.float64))
    r = r[np.isfinite(r)]
    rmax = float(np.percentile(r, 99.5)) if r.size else 1.0
    rmax = rmax if rmax > 0 else 1.0
    return {
        "input": data_uri(png_bytes(colourise(inp, "gray", vmin, vmax))),
        "sobel": data_uri(png_bytes(colourise(sobel, "magma", 0.0, max(smax, 1e-12)))),
        "recon": data_uri(png_bytes(colourise(recon, "gray", vmin, vmax))),
        "residual": data_uri(png_bytes(colourise(residual, "RdBu_r", -rmax, rmax))),
        "corner": data_uri(png_bytes(colourise(corner, "viridis", 0.0, max(float(np.nanmax(corner)), 1e-12)))),
    }


def figure_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def message_png(text: str) -> bytes:
    """A small placeholder figure (the rule's figure outputs always exist, even with nothing to plot)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#555")
    return figure_png(fig)


# ---------------------------------------------------------------- reading the contract files

def read_csv(path: Path) -> pd.DataFrame:
    """A results CSV with ``key`` kept as text (HDU numbers and dataset paths share the column)."""
    return restore(pd.read_csv(path, dtype={"key": str, "source": str}, keep_default_na=True))


def ident(source: Any, key: Any, index: Any) -> tuple[str, str, int]:
    """The (source, key, index) triple that names a frame or tile everywhere downstream."""
    return str(source), str(key), int(index)


def component_columns(df: pd.DataFrame) -> list[str]:
    """Numeric component-score columns: known ones first in a fixed order, then any others."""
    numeric = [c for c in df.columns if c not in BASE_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
    known = [c for c in COMPONENTS if c in numeric]
    return known + [c for c in numeric if c not in known]


def read_gallery(path: Path) -> dict[str, np.ndarray] | None:
    """All datasets of ``gallery.h5`` (strings decoded), or None when the file is absent."""
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        out = {}
        for name in ("input", "sobel", "recon", "residual", "corner", "index", "rank"):
            out[name] = f[name][()]
        for name in ("source", "key"):
            out[name] = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in f[name][()]],
                                 dtype=object)
    return out


def run_time(results: Path) -> tuple[float | None, list[tuple[str, float]]]:
    """Total wall time (sum of the ``s`` column of every Snakemake benchmark) and the time per step."""
    steps: dict[str, float] = {}
    root = results / "benchmarks"
    for tsv in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
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


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def fmt_num(v: Any) -> str:
    """Short, stable text for a score (empty for missing)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(f):
        return ""
    return f"{f:.4g}" if abs(f) >= 1e-3 or f == 0 else f"{f:.2e}"


def parse_header(text: Any) -> dict[str, str]:
    """The manifest's ``header`` JSON as a dict of strings ({} for blank or unparseable text)."""
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        return {"header": text}
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {"header": str(d)}


# ---------------------------------------------------------------- figures

def latent_map_png(lm: pd.DataFrame, top_k: int) -> bytes:
    """Scatter of the 2-D latent projection coloured by score, top-K anomalies ringed and numbered."""
    import matplotlib.pyplot as plt

    lm = lm.sort_values("rank", ascending=False)  # most anomalous drawn last (on top)
    top = lm[lm["rank"] <= top_k].sort_values("rank")
    fig, ax = plt.subplots(figsize=(7.5, 6))
    sc = ax.scatter(lm["x"], lm["y"], c=lm["score"], cmap="viridis", s=9, alpha=0.8, linewidths=0)
    ax.scatter(top["x"], top["y"], s=70, facecolors="none", edgecolors="#d62728", linewidths=1.6,
               label=f"top {len(top)} anomalies")
    for _, r in top.head(10).iterrows():
        ax.annotate(str(int(r["rank"])), (r["x"], r["y"]), xytext=(4, 4), textcoords="offset points",
                    fontsize=8, color="#d62728")
    fig.colorbar(sc, ax=ax, label="anomaly score")
    ax.set_xlabel("latent projection 1")
    ax.set_ylabel("latent projection 2")
    ax.set_title("VAE latent space (2-D projection)")
    ax.legend(loc="best", fontsize=8)
    return figure_png(fig)


def latent_map_svg(lm: pd.DataFrame, top_k: int, width: int = 720, height: int = 480) -> dict:
    """Points for the inline SVG map: background coloured by score, top-K clickable to their gallery card.

    At most MAX_MAP_POINTS are drawn: all of the top-K plus an even subsample of the rest.
    """
    pad = 16
    n = len(lm)
    top = lm[lm["rank"] <= top_k]
    rest = lm[lm["rank"] > top_k].sort_values("rank")
    keep = max(MAX_MAP_POINTS - len(top), 0)
    if len(rest) > keep:
        rest = rest.iloc[np.linspace(0, len(rest) - 1, keep).astype(int)] if keep else rest.iloc[:0]
    x, y = lm["x"].to_numpy(float), lm["y"].to_numpy(float)
    x0, x1 = (np.nanmin(x), np.nanmax(x)) if n else (0.0, 1.0)
    y0, y1 = (np.nanmin(y), np.nanmax(y)) if n else (0.0, 1.0)
    sx = (width - 2 * pad) / (x1 - x0 if x1 > x0 else 1.0)
    sy = (height - 2 * pad) / (y1 - y0 if y1 > y0 else 1.0)
    pct = lm["score"].rank(pct=True)
    cmap = colormaps["viridis"]

    def point(r) -> dict:
        c = cmap(float(pct.loc[r.Index]) * 0.85)  # stop short of viridis' pale yellow end
        return {"cx": f"{pad + (r.x - x0) * sx:.1f}", "cy": f"{height - pad - (r.y - y0) * sy:.1f}",
                "rank": int(r.rank), "score": fmt_num(r.score), "source": str(r.source), "key": str(r.key),
                "index": int(r.index), "fill": "#%02x%02x%02x" % tuple(int(255 * v) for v in c[:3])}

    return {"width": width, "height": height, "n": n, "shown": len(top) + len(rest),
            "points": [point(r) for r in rest.sort_values("rank", ascending=False).itertuples()],
            "top": [point(r) for r in top.sort_values("rank", ascending=False).itertuples()]}


def metric_panels(df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Group a metrics table's numeric columns into panels: ``train_X`` and ``val_X`` share panel X.

    >>> metric_panels(pd.DataFrame(columns=["epoch", "train_loss", "val_loss", "lr"], dtype=float))
    [('loss', ['train_loss', 'val_loss']), ('lr', ['lr'])]
    """
    panels: dict[str, list[str]] = {}
    for c in df.columns:
        if c == "epoch" or not pd.api.types.is_numeric_dtype(df[c]):
            continue
        name = c.split("_", 1)[1] if c.startswith(("train_", "val_")) else c
        panels.setdefault(name, []).append(c)
    return list(panels.items())


def training_curves_png(metrics: dict[str, pd.DataFrame | None], per_row: int = 4) -> bytes:
    """Each model's metrics against the epoch, ``per_row`` panels a row; losses spanning a decade on a log axis."""
    import matplotlib.pyplot as plt

    present = {m: df for m, df in metrics.items() if df is not None and len(df)}
    if not present:
        return message_png("no training metrics found")
    panels = {m: metric_panels(df) for m, df in present.items()}
    rows = {m: max(1, -(-len(p) // per_row)) for m, p in panels.items()}
    fig, axes = plt.subplots(sum(rows.values()), per_row, figsize=(3.6 * per_row, 2.7 * sum(rows.values())),
                             squeeze=False)
    first = 0
    for model, plist in panels.items():
        df = present[model]
        ep = df["epoch"] if "epoch" in df else pd.Series(range(1, len(df) + 1))
        cells = axes[first:first + rows[model]].ravel()
        first += rows[model]
        for ax, (name, cols) in zip(cells, plist):
            for c in cols:
                ax.plot(ep, df[c], marker="o", markersize=3, label=c.split("_", 1)[0] if len(cols) > 1 else c)
            values = pd.concat([df[c] for c in cols]).dropna()
            if "loss" in name and len(values) and (values > 0).all() and values.max() > 10 * values.min():
                ax.set_yscale("log")  # only when the loss spans a decade; else log ticks are unreadable
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{model.upper()} {name}", fontsize=10)
            ax.set_xlabel("epoch", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if len(cols) > 1:
                ax.legend(fontsize=8)
        for ax in cells[len(plist):]:
            ax.axis("off")
    fig.tight_layout()
    return figure_png(fig)


# ---------------------------------------------------------------- context

@dataclass
class Figures:
    """PNG files written beside the page (Snakemake's ``report()`` collects them)."""
    latent_map: bytes
    training_curves: bytes


def _read_optional(path: Path) -> pd.DataFrame | None:
    return read_csv(path) if path.exists() else None


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
    pct = {c: anomalies[c].rank(pct=True).to_numpy() for c in comps}
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
            comp_rows.append({"name": c, "help": COMPONENTS.get(c, c), "value": fmt_num(v),
                              "pct": None if pd.isna(v) else round(float(pct[c][n]) * 100)})
        label = row.get("label", np.nan) if row is not None else np.nan
        where = None
        if m is not None:
            where = {"frame": int(m.frame), "y0": int(m.y0), "x0": int(m.x0), "height": int(m.height),
                     "width": int(m.width), "tiled": bool(m.y0 or m.x0 or m.height > tile or m.width > tile)}
        cards.append({"rank": rank, "source": key[0], "key": key[1], "index": key[2],
                      "score": fmt_num(row["score"]) if row is not None else "",
                      "label": "" if pd.isna(label) else str(label), "components": comp_rows,
                      "header": parse_header(m.header) if m is not None else {}, "where": where,
                      "images": gallery_images(gal["input"][g], gal["sobel"][g], gal["recon"][g],
                                               gal["residual"][g], gal["corner"][g])})
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


def pooled_populations(anomalies: pd.DataFrame) -> list[tuple[str, int]]:
    """(population, rows) of the populations too small to be normalised alone (scored against the run)."""
    if "pooled" not in anomalies:
        return []
    rows = anomalies[anomalies["pooled"].astype(str).str.lower() == "true"]
    return [(str(p), int(n)) for p, n in pd.Series(population(rows)).value_counts().sort_index().items()]


def build_context(results: str | Path, config: dict, top_k: int, table_rows: int) -> tuple[dict, Figures]:
    """Everything the template shows, from the files in ``results`` (see module docstring)."""
    results = Path(results)
    need = [results / "anomalies.csv", results / "manifest.csv"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise UserError(f"report needs {', '.join(missing)}: run the scoring steps first (snakemake rank)")
    anomalies = read_csv(results / "anomalies.csv").sort_values("rank", kind="stable").reset_index(drop=True)
    manifest = read_csv(results / "manifest.csv")
    by_frame = _read_optional(results / "anomalies_by_frame.csv")
    latent = _read_optional(results / "latent_map.csv")
    metrics = {m: _read_optional(results / "models" / f"{m}_metrics.csv") for m in ("cnn", "vae")}
    comps = component_columns(anomalies)

    tile = int(config.get("ingest", {}).get("tile_size", 64))
    gallery = _gallery(read_gallery(results / "gallery.h5"), anomalies, manifest, comps, top_k, tile)
    total, steps = run_time(results)
    lm_png = latent_map_png(latent, top_k) if latent is not None and len(latent) else \
        message_png("no latent map (results/latent_map.csv) found")
    curves_png = training_curves_png(metrics)

    generated = {}
    for name in ("samples", "interpolation"):
        p = results / "generate" / f"{name}.png"
        generated[name] = data_uri(p.read_bytes()) if p.exists() else None

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
        "config": yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100),
        "versions": package_versions(),
        "components": [(c, COMPONENTS.get(c, "component score")) for c in comps],
        "gallery": gallery, "top_k": top_k,
        "table": _table(anomalies, comps, table_rows, len(gallery), ["source", "key", "index"]),
        "frame_table": frame_table,
        "pooled": pooled_populations(anomalies),
        "min_population": config.get("score", {}).get("min_population"),
        "latent": latent_map_svg(latent, len(gallery) or top_k) if latent is not None and len(latent) else None,
        "latent_png": data_uri(lm_png),
        "curves_png": data_uri(curves_png),
        "metrics": {m: _metrics_summary(df) for m, df in metrics.items()},
        "generated": generated,
        "mask_colour": MASK_COLOUR,
    }
    return ctx, Figures(latent_map=lm_png, training_curves=curves_png)


# ---------------------------------------------------------------- render + write

def render(ctx: dict) -> str:
    """The page's HTML: the template with autoescape on, the script inlined and pinned by its CSP hash."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    script = (TEMPLATES / "report.js").read_text()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return env.get_template("report.html.j2").render(
        **ctx, script=Markup(script), script_hash=f"sha256-{digest}")


def write_report(results: str | Path, out: str | Path, config: dict, top_k: int, table_rows: int) -> Path:
    """Write ``out`` (the page) and the figure PNGs beside it (latent_map.png, training_curves.png)."""
    out = Path(out)
    ctx, figs = build_context(results, config, top_k, table_rows)
    html = render(ctx)
    for name, png in (("latent_map.png", figs.latent_map), ("training_curves.png", figs.training_curves)):
        with atomic_path(out.parent / name) as tmp:
            tmp.write_bytes(png)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out
