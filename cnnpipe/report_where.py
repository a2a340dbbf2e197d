"""The report's "where is it" parts: sky and pixel coordinates of a card, the whole frame with the tile
boxed, per-frame heat maps of tile scores, WCS problems, and the human labels the page starts from.

Arrays and plain dicts out; ``report`` turns the RGBA arrays into data URIs and the template escapes text.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import framemap, sky
from .figures import data_uri, png_bytes
from .tiling import frame_extent

SKY_COLUMNS = sky.COLUMNS  # coordinate columns: the report keeps them out of its score columns


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def coordinates(row: pd.Series | None) -> dict | None:
    """A card's tile centre: 1-based pixel position and, when the frame has a WCS, its world coordinates."""
    if row is None or not _finite(row.get("x_image")):
        return None
    out = {"pixel": f"x {row['x_image']:.1f}, y {row['y_image']:.1f}", "world": None}
    if _finite(row.get("x_world")):
        axes = str(row.get("world_axes") or "world")
        out["world"] = f"{axes}: {row['x_world']:.6f}, {row['y_world']:.6f}"
    return out


def card_where(m, tile: int) -> dict:
    """Where a card's tile is in its frame, from its manifest row ``m``: offsets, frame shape, the tile's
    ``side`` in frame pixels (less than ``tile`` where a small frame was resampled up) and whether the
    frame is more than that one tile."""
    side = int(frame_extent(tile, getattr(m, "scale", 1.0)))
    return {"frame": int(m.frame), "y0": int(m.y0), "x0": int(m.x0), "height": int(m.height),
            "width": int(m.width), "side": side, "tiled": bool(m.y0 or m.x0 or m.height > side or m.width > side)}


def card_frame(maps: dict, card: dict, tile: int) -> np.ndarray | None:
    """RGBA of the card's whole frame, downsampled, with its tile outlined (its side: the card's
    ``where["side"]`` in frame pixels, else ``tile``); None for an untiled frame (the input thumbnail is
    then the whole frame) or one without a view."""
    where = card.get("where")
    if not where or not where["tiled"]:
        return None
    m = maps.get((card["source"], card["key"], where["frame"]))
    if m is None:
        return None
    side = where.get("side", tile)
    h, w = min(side, where["height"] - where["y0"]), min(side, where["width"] - where["x0"])
    return framemap.boxed(framemap.grey_rgba(m["image"]), where["y0"], where["x0"], h, w, m["factor"])


def frame_maps(maps: dict, by_frame: pd.DataFrame | None) -> list[dict]:
    """The by-frame view's maps, best-ranked frame first: the frame and its tile-score heat map as RGBA."""
    if by_frame is None or not maps:
        return []
    out = []
    for r in by_frame.sort_values("rank").itertuples(index=False):
        m = maps.get((str(r.source), str(r.key), int(r.frame)))
        if m is None or int(getattr(r, "tiles", 1)) < 2:
            continue
        out.append({"rank": int(r.rank), "source": str(r.source), "key": str(r.key), "frame": int(r.frame),
                    "tiles": int(r.tiles), "height": m["height"], "width": m["width"], "factor": m["factor"],
                    "image": framemap.grey_rgba(m["image"]), "heat": framemap.heat_rgba(m["heat"])})
    return out


def wcs_problems(manifest: pd.DataFrame) -> list[dict]:
    """One entry per frame whose WCS could not be used (it then has pixel coordinates only)."""
    if "wcs_problem" not in manifest:
        return []
    bad = manifest[(manifest["status"] == "ok") & (manifest["wcs_problem"].astype("string").fillna("") != "")]
    bad = bad.drop_duplicates(["source", "key"])
    return [{"source": str(r.source), "key": str(r.key), "reason": str(r.wcs_problem)} for r in bad.itertuples()]


def n_with_wcs(manifest: pd.DataFrame) -> int:
    """Frames carrying a usable WCS."""
    if "wcs" not in manifest:
        return 0
    ok = manifest[(manifest["status"] == "ok") & (manifest["wcs"].astype("string").fillna("") != "")]
    return len(ok.drop_duplicates(["source", "key", "frame"]))


def labels(path: str | Path | None) -> list[list]:
    """The human labels the page starts from, ``[source, key, index, label]`` each (the whole file, also
    rows not shown in the page, so the page's download keeps them)."""
    from .rank import read_labels

    df = read_labels(path)
    return [[str(s), str(k), int(i), str(lab)] for s, k, i, lab in
            zip(df["source"], df["key"], df["index"], df["label"])]


def _uri(rgba: np.ndarray | None) -> str | None:
    return None if rgba is None else data_uri(png_bytes(rgba))


def _annotate_table(table: dict | None, df: pd.DataFrame, labelling: bool) -> None:
    """Give a ranked table's rows their centre's coordinates; ``labelling``: rows get mark buttons."""
    if table is None:
        return
    table["has_coords"], table["labelling"] = "x_image" in df, labelling
    for row, (_, r) in zip(table["rows"], df.iterrows()):
        row["coords"] = coordinates(r)


def context(ctx: dict, anomalies: pd.DataFrame, by_frame: pd.DataFrame | None, manifest: pd.DataFrame,
            paths: dict[str, Path], tile: int) -> dict:
    """The page's where-is-it parts, added to the report's context ``ctx`` (whose gallery cards and table
    rows this annotates in place); ``paths``: the optional ``frame_maps`` and ``labels`` files."""
    maps = framemap.read(paths.get("frame_maps"))
    by_rank = anomalies.set_index("rank", drop=False)
    for card in ctx["gallery"]:
        card["coords"] = coordinates(by_rank.loc[card["rank"]] if card["rank"] in by_rank.index else None)
        card["frame_view"] = _uri(card_frame(maps, card, tile))
    _annotate_table(ctx["table"], anomalies, labelling=True)
    if by_frame is not None:
        _annotate_table(ctx["frame_table"], by_frame.sort_values("rank", kind="stable"), labelling=False)
    fmaps = frame_maps(maps, by_frame)
    return {"frame_maps": [{**m, "image": _uri(m["image"]), "heat": _uri(m["heat"])} for m in fmaps],
            "map_ranks": {m["rank"] for m in fmaps}, "wcs_problems": wcs_problems(manifest),
            "n_wcs_frames": n_with_wcs(manifest), "labels": json.dumps(labels(paths.get("labels")))}
