"""Whole-frame context for the report: each shown frame downsampled, and a heat map of its tile scores.

A 4k x 4k frame is cut into thousands of tiles; a card showing one tile has no context. For the frames the
report shows (those of its top anomalies, and the best-ranked frames with more than one tile) this module
re-assembles the frame from its tiles in the frames shards at reduced resolution, and lays the tile scores
over the same grid. Memory: one strip of a frame (a tile high, the frame wide) and the tiles it touches at a
time, never a full frame.
"""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from skimage.transform import resize

from .atomic import atomic_path
from .figures import colourise, robust_range
from .tiling import table_extent

FRAME = ["source", "key", "frame"]
BOX_RGB = (255, 59, 48)        # the tile's outline on the frame


def factor(height: int, width: int, pixels: int) -> int:
    """Integer downsampling factor that brings the longer side to at most ``pixels``."""
    return max(1, math.ceil(max(height, width) / pixels))


def downsampled_frame(tile_rows, y0: np.ndarray, x0: np.ndarray, height: int, width: int, tile: int,
                      f: int) -> np.ndarray:
    """The frame that tiles at offsets (y0, x0) cut, downsampled by ``f`` (mean of each f x f block's finite
    pixels; NaN where there is none), built one block-aligned strip at a time.

    ``tile_rows(i, j)`` returns tiles ``i:j`` of the frame (in the order of ``y0``/``x0``, sorted by ``y0``).
    Tiles are pasted in that order, so where they overlap the later tile's pixels count, as when the frame
    was cut. Memory: one strip (``tile`` rounded up to ``f`` rows, the frame's width) and the tiles it
    touches, never the whole frame.
    """
    s_rows = f * math.ceil(tile / f)                     # strip height: whole blocks, at least one tile
    gw = math.ceil(width / f)
    out = np.full((math.ceil(height / f), gw), np.nan, np.float32)
    strip = np.empty((s_rows, gw * f), np.float32)
    first, loaded, held = 0, 0, np.empty((0, tile, tile), np.float32)
    for top in range(0, height, s_rows):
        stop = int(np.searchsorted(y0, top + s_rows))           # read the tiles reaching into this strip
        if stop > loaded:
            held = np.concatenate([held, tile_rows(loaded, stop)])
            loaded = stop
        while first < loaded and y0[first] + tile <= top:       # drop those wholly above it
            first += 1
        held = held[len(held) - (loaded - first):]
        strip.fill(np.nan)
        for t, ty, tx in zip(held, y0[first:loaded], x0[first:loaded]):
            r0, r1 = max(ty, top), min(ty + tile, top + s_rows, height)
            if r1 > r0:
                c1 = min(tile, width - tx)
                strip[r0 - top:r1 - top, tx:tx + c1] = t[r0 - ty:r1 - ty, :c1]
        finite = np.isfinite(strip)
        blocks = (s_rows // f, f, gw, f)
        total = np.where(finite, strip, 0.0).reshape(blocks).sum(axis=(1, 3))
        count = finite.reshape(blocks).sum(axis=(1, 3))
        rows = out[top // f:top // f + s_rows // f]
        with np.errstate(invalid="ignore", divide="ignore"):
            rows[:] = (total / count)[:len(rows)]
    return out


def heat_map(y0: np.ndarray, x0: np.ndarray, values: np.ndarray, height: int, width: int, tile: int,
             f: int) -> np.ndarray:
    """Per cell of the downsampled grid, the largest value of the tiles covering it (NaN: none)."""
    grid = np.full((math.ceil(height / f), math.ceil(width / f)), -np.inf)
    for ty, tx, v in zip(y0, x0, values):
        cells = grid[ty // f:math.ceil(min(ty + tile, height) / f), tx // f:math.ceil(min(tx + tile, width) / f)]
        np.maximum(cells, v, out=cells)
    return np.where(np.isfinite(grid), grid, np.nan).astype(np.float32)


def frames_to_show(top: pd.DataFrame, by_frame: pd.DataFrame, n_maps: int) -> pd.DataFrame:
    """``source, key, frame`` of the frames the report shows whole: those of the ``top`` rows (the gallery's,
    with their ``frame``) and the ``n_maps`` best-ranked, each of more than one tile (a frame of one tile is
    its own thumbnail). ``by_frame``: anomalies_by_frame.csv."""
    multi = by_frame[by_frame["tiles"] > 1]
    cards = top[FRAME].merge(multi[FRAME], on=FRAME)
    return pd.concat([cards, multi.nsmallest(n_maps, "rank")[FRAME]]).drop_duplicates(ignore_index=True)


def _rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows of a dataset in the given order: one slice when they are consecutive (a frame's tiles are; h5py's
    point selection is many times slower), else a sorted point selection put back in order."""
    if len(rows) and (np.diff(rows) == 1).all():
        return ds[rows[0]:rows[-1] + 1]
    order = np.argsort(rows)
    out = np.empty((len(rows), *ds.shape[1:]), ds.dtype)
    out[order] = ds[rows[order]]
    return out


def _at_side(tiles: np.ndarray, side: int) -> np.ndarray:
    """Tiles (n, T, T) resampled (bilinear) to ``side`` pixels a side: a resampled frame's tiles back at
    frame resolution (a masked pixel stays masked); unchanged when ``side`` is T."""
    if side == tiles.shape[-1]:
        return tiles
    return resize(tiles, (len(tiles), side, side), order=1, anti_aliasing=False, mode="edge").astype(np.float32)


def build(shards: dict[int, str | Path], tiles: pd.DataFrame, scores: pd.DataFrame, frames: pd.DataFrame,
          tile: int, pixels: int, out: str | Path) -> int:
    """Write ``out`` (HDF5): per frame of ``frames`` (``source, key, frame, height, width``, ``scale``) its
    image downsampled to at most ``pixels`` a side and the heat map of its tiles' ``value`` (from ``scores``,
    keyed by ``source, key, index``). ``tiles``: manifest rows (``source, key, index, frame, shard, row,
    y0, x0``) of every tile of those frames; ``shards``: frames shard file by shard number. The map is in
    frame pixels: the tiles of a frame resampled up at ingest (scale > 1) are resampled back to their
    side in frame pixels (:func:`cnnpipe.tiling.frame_extent`) before they are pasted."""
    tiles = tiles.merge(scores, on=["source", "key", "index"], how="left")
    groups = dict(list(tiles.groupby(FRAME, sort=False)))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        strings = h5py.string_dtype()
        f.create_dataset("source", data=frames["source"].tolist(), dtype=strings)
        f.create_dataset("key", data=frames["key"].astype(str).tolist(), dtype=strings)
        for name in ("frame", "height", "width"):
            f[name] = frames[name].to_numpy(np.int64)
        factors = []
        for n, (fr, side) in enumerate(zip(frames.itertuples(index=False), table_extent(frames, tile))):
            g = groups[(fr.source, fr.key, fr.frame)]
            k = factor(fr.height, fr.width, pixels)
            g = g.sort_values(["y0", "x0"], kind="stable")
            (shard,) = g["shard"].unique()                       # a frame is read by one ingest job
            rows, side = g["row"].to_numpy(), int(side)
            with h5py.File(shards[int(shard)], "r") as frames_h5:
                f[f"image/{n}"] = downsampled_frame(lambda i, j: _at_side(_rows(frames_h5["frames"], rows[i:j]), side),
                                                    g["y0"].to_numpy(), g["x0"].to_numpy(), fr.height, fr.width,
                                                    side, k)
            f[f"heat/{n}"] = heat_map(g["y0"].to_numpy(), g["x0"].to_numpy(), g["value"].to_numpy(np.float64),
                                      fr.height, fr.width, side, k)
            factors.append(k)
        f["factor"] = np.asarray(factors, np.int64)
    return len(frames)


def read(path: str | Path) -> dict[tuple[str, str, int], dict]:
    """``build``'s file as {(source, key, frame): {image, heat, factor, height, width}}; {} when absent."""
    if not path or not Path(path).exists():
        return {}
    with h5py.File(path, "r") as f:
        src, key = f["source"].asstr()[()], f["key"].asstr()[()]
        return {(str(s), str(k), int(fr)): {"image": f[f"image/{n}"][()], "heat": f[f"heat/{n}"][()],
                                            "factor": int(f["factor"][n]), "height": int(f["height"][n]),
                                            "width": int(f["width"][n])}
                for n, (s, k, fr) in enumerate(zip(src, key, f["frame"][()]))}


# ---------------------------------------------------------------- arrays -> RGBA for the page

def grey_rgba(image: np.ndarray) -> np.ndarray:
    """The frame in grey over its 0.5-99.5 percentile range; masked pixels in the report's mask colour."""
    return colourise(image, "gray", *robust_range(image))


def boxed(rgba: np.ndarray, y0: int, x0: int, h: int, w: int, f: int) -> np.ndarray:
    """``rgba`` with the outline of the frame pixels [y0, y0+h) x [x0, x0+w) drawn in BOX_RGB (1 px)."""
    out = rgba.copy()
    t, l = y0 // f, x0 // f
    b, r = min(math.ceil((y0 + h) / f), out.shape[0]) - 1, min(math.ceil((x0 + w) / f), out.shape[1]) - 1
    for rows, cols in ((slice(t, b + 1), l), (slice(t, b + 1), r), (t, slice(l, r + 1)), (b, slice(l, r + 1))):
        out[rows, cols, :3] = BOX_RGB
        out[rows, cols, 3] = 255
    return out


def heat_rgba(heat: np.ndarray) -> np.ndarray:
    """Tile-score heat map (values in [0, 1]) in inferno; cells no tile covers transparent."""
    cm = colormaps["inferno"].with_extremes(bad=(0, 0, 0, 0))
    return cm(Normalize(0.0, 1.0, clip=True)(np.ma.masked_invalid(heat)), bytes=True)
