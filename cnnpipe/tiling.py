"""Cut frames into fixed-size model inputs: overlapping tiles for large frames; small ones resampled up or padded.

A frame smaller than the tile along either side is, by default (``ingest.small_frames: upsample``),
resampled (bilinear) so that its shorter side is the tile side, aspect ratio kept, and then tiled like any
other frame; ``pad`` instead pads it with NaN (masked) up to the tile. Tile positions are always kept in
the original frame's pixels: a resampled frame's ``scale`` (model pixels per frame pixel) maps them.

Why overlap: an object cut by a tile edge is seen whole in no tile of a plain grid; with an overlap of
``o`` pixels every object up to ``o`` pixels across lies whole inside some tile. Its price is
``(T / (T - o))^2`` more tiles for large frames (1.8x at the default 64 / 16); a frame that is already
one tile (or smaller) is never re-cut.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
from skimage.transform import resize

from .normalise import finite_rows

SMALL_FRAMES = ("upsample", "pad")  # ingest.small_frames


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis so tiles of ``tile`` pixels overlap by at least ``overlap`` and the
    last tile ends exactly at the edge (no pixel is left out)."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def cut_tiles(images: np.ndarray, tile: int, overlap: int) -> tuple[np.ndarray, list[int], list[int]]:
    """All tiles of a block (n, H, W) in one copy -> ``(tiles (n * len(ys) * len(xs), T, T), ys, xs)``,
    frame-major, then row-major (the order :func:`tiles` yields). Frames smaller than ``tile`` are padded
    with NaN (masked); frames of exactly one tile come back as they are, without a copy."""
    n, h, w = images.shape
    if h < tile or w < tile:
        padded = np.full((n, max(h, tile), max(w, tile)), np.nan, dtype=np.float32)
        padded[:, :h, :w] = images
        images, h, w = padded, *padded.shape[1:]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    if (h, w) == (tile, tile):
        return images, ys, xs
    out = np.empty((n, len(ys), len(xs), tile, tile), np.float32)
    # per band of rows, the evenly spaced tiles (all but the last, which ends at the edge) as one strided
    # view: two block copies a band, 2x faster than one fancy-index gather over all tiles
    step = xs[1] - xs[0] if len(xs) > 1 else 1
    s0, s1, s2 = images.strides
    for i, y in enumerate(ys):
        band = images[:, y:y + tile]
        out[:, i, :-1] = np.lib.stride_tricks.as_strided(band, (n, len(xs) - 1, tile, tile), (s0, step * s2, s1, s2))
        out[:, i, -1] = band[:, :, xs[-1]:xs[-1] + tile]
    return out.reshape(-1, tile, tile), ys, xs


def model_shape(height: int, width: int, tile: int, small_frames: str = "upsample") -> tuple[int, int, float]:
    """``(H, W, scale)``: the shape a ``height`` x ``width`` frame is tiled at, and model pixels per frame
    pixel. ``upsample`` and a side below ``tile``: the shorter side becomes ``tile``, the longer one
    ``round(side * scale)`` (aspect ratio kept to the pixel); else the frame as it is (scale 1)."""
    if small_frames not in SMALL_FRAMES:
        raise ValueError(f"unknown ingest.small_frames '{small_frames}' (one of {', '.join(SMALL_FRAMES)})")
    short = min(height, width)
    if small_frames == "pad" or short >= tile or short == 0:
        return height, width, 1.0
    scale = tile / short
    return (tile if height == short else round(height * scale),
            tile if width == short else round(width * scale), scale)


def frame_extent(tile: int, scale) -> np.ndarray:
    """A tile's side in original frame pixels: ``tile`` for frames tiled as they are (scale 1), the shorter
    side for resampled ones. ``scale``: a number or an array (one per tile)."""
    return np.rint(tile / np.asarray(scale, np.float64)).astype(np.int64)


def table_extent(table, tile: int) -> np.ndarray:
    """:func:`frame_extent` of every row of a manifest-like table: by its ``scale`` column, 1 where it has
    none (a manifest from before resampling existed, a hand-made table)."""
    scale = table["scale"].to_numpy(np.float64) if "scale" in table else np.ones(len(table))
    return frame_extent(tile, np.nan_to_num(scale, nan=1.0))  # (NaN: a row of no frame; its height is NaN too)


def frame_starts(starts: list[int], scale: float) -> list[int]:
    """Tile starts on the resampled grid -> the nearest original frame pixel (exact for whole scales)."""
    return starts if scale == 1 else [int(v) for v in np.rint(np.asarray(starts) / scale)]


@lru_cache(maxsize=16)
def _bilinear(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix of scikit-image's 1-D bilinear resize (``order=1``, ``mode="edge"``): the resize of
    the identity, so a frame resized by ``rows @ frame @ cols.T`` equals ``resize`` of it (bilinear
    interpolation is separable), at the cost of two matrix products instead of a 3-D spline zoom."""
    return resize(np.eye(src), (dst, src), order=1, anti_aliasing=False, mode="edge").astype(np.float32)


def upsample(images: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A block (n, h, w) resampled to (n, *shape), bilinear (scikit-image ``resize(order=1)``, no
    anti-aliasing: it only enlarges). NaN marks masked pixels.

    Frames without masked pixels are resized as they are. In the others an output pixel is masked where its
    *nearest* input pixel is (the masked share of a frame stays what it was: one masked pixel becomes a
    ``scale`` x ``scale`` block, not the ~4x larger footprint of every output pixel it touches), and each
    unmasked output pixel is the bilinear mean of the unmasked input pixels under it only (weights
    renormalised: ``resize(x * valid) / resize(valid)``), so no fill value leaks into the tile. At the
    frame's border the edge pixels are held (``mode="edge"``), not mirrored.
    """
    n = len(images)
    out = np.empty((n, *shape), np.float32)
    if n == 0:  # (a block whose frames are all unusable)
        return out
    clean = finite_rows(images.reshape(n, -1))
    rows, cols = (_bilinear(a, b) for a, b in zip(images.shape[1:], shape))

    def size(block: np.ndarray, order: int = 1) -> np.ndarray:
        if order == 0:
            return resize(block, (len(block), *shape), order=0, anti_aliasing=False, mode="edge")
        return rows @ block.astype(np.float32, copy=False) @ cols.T   # separable: two BLAS products

    if clean.any():
        out[clean] = size(images if clean.all() else images[clean])
    if not clean.all():
        dirty = images[~clean]
        ok = np.isfinite(dirty)
        total, weight = size(np.where(ok, dirty, np.float32(0))), size(ok.astype(np.float32))
        keep = size(ok, order=0) & (weight > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[~clean] = np.where(keep, total / weight, np.nan)
    return out


def tiles(image: np.ndarray, tile: int, overlap: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(y0, x0, tile_image)`` of one frame; frames smaller than ``tile`` are padded with NaN (masked)."""
    cut, ys, xs = cut_tiles(np.asarray(image)[None], tile, overlap)
    for k, (y0, x0) in enumerate((y, x) for y in ys for x in xs):
        yield y0, x0, cut[k]


def tiles_per_frame(height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles :func:`tiles` cuts from a ``height`` x ``width`` frame (the shape it is tiled at:
    :func:`model_shape`)."""
    return len(tile_starts(max(height, tile), tile, overlap)) * len(tile_starts(max(width, tile), tile, overlap))


@dataclass(frozen=True)
class Cells:
    """The tiles along one axis as runs of disjoint cells: every tile edge is a cell edge, so a per-tile
    maximum is a maximum over the few per-cell maxima it covers (overlapping tiles share cells)."""

    edges: np.ndarray  # (cells + 1,) cell boundaries, 0 .. length
    first: np.ndarray  # (tiles,) first cell of each tile
    count: np.ndarray  # (tiles,) cells each tile covers


def tile_cells(starts: list[int], tile: int, length: int) -> Cells:
    """:class:`Cells` of tiles of side ``tile`` at ``starts`` over ``length`` pixels (clipped to the edge)."""
    starts_a = np.asarray(starts, np.int64)
    ends = np.minimum(starts_a + tile, length)
    edges = np.unique(np.concatenate([starts_a, ends, [0, length]]))
    first = np.searchsorted(edges, starts_a)
    return Cells(edges, first, np.searchsorted(edges, ends) - first)


def tile_reduce(op: np.ufunc, cells: np.ndarray, rows: Cells, cols: Cells) -> np.ndarray:
    """Per-tile ``op`` (e.g. ``np.fmax``) of per-cell values (n, cells_y, cells_x) -> (n, tiles_y, tiles_x)."""
    def along(a: np.ndarray, c: Cells, axis: int) -> np.ndarray:
        out = np.take(a, c.first, axis=axis)
        for k in range(1, int(c.count.max())):
            out = op(out, np.take(a, c.first + np.minimum(k, c.count - 1), axis=axis))
        return out

    return along(along(cells, rows, 1), cols, 2)
