"""The report's pictures: arrays to PNG data URIs, the gallery thumbnails, the latent map (PNG and inline
SVG points) and the training curves. Arrays and tables in, PNG bytes or plain dicts out; no file I/O."""
from __future__ import annotations

import base64
import io
import math
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image

matplotlib.use("Agg")
from matplotlib import colormaps  # noqa: E402  (after choosing the Agg backend)
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

MASK_COLOUR = "#39ff14"  # masked (NaN) pixels: a green no colour map below uses
MAX_MAP_POINTS = 5000  # points drawn in the interactive latent map (top-K always included)


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
                   corner: np.ndarray, orientation: np.ndarray) -> dict:
    """The six thumbnails of one anomaly as data URIs.

    Input and reconstruction share the input's grey scale (so they compare by eye); the Sobel magnitude
    uses magma from 0; the residual a diverging map symmetric about 0; the corner map (response over the
    population's usual response) and the orientation map (edge misfit over the usual misfit) viridis from 0
    to their maximum, so their brightest spots are what made the ``corner`` and ``orientation`` scores.
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
        **{name: data_uri(png_bytes(colourise(m, "viridis", 0.0, max(float(np.nanmax(m)), 1e-12))))
           for name, m in (("corner", corner), ("orientation", orientation))},
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
