"""Outlier pixels, measured on the raw pixel values at ingest, in units of each frame's noise.

- ``sharpness``: how far a pixel stands above the median of its 8 neighbours. A cosmic-ray hit deposits
  charge in one to a few pixels; a star is spread by the point-spread function, so its brightest pixel
  stands only a little above its neighbours. This is the core of L.A.Cosmic's test (van Dokkum 2001): the
  fine-scale excess ``I - median8(I)`` against the noise.
- ``coldness``: how far a pixel lies below the frame's median level: dead pixels and bad columns (a deficit,
  which the learned components, all looking for excess signal, underweight).

Both are measured before normalisation, because it clips: a 30 000-count hit and a 6 000-count star core
both become 1.0, and so does the difference between a dead column and a dark patch of sky.

Ingestion needs only each tile's largest value of the two maps (:func:`outlier_peaks`); the maps are never
held whole: frames are filtered in cache-sized pieces (several small frames, or a band of rows of a large
one), each piece reduced to per-tile maxima at once. :func:`outlier_maps` gives the full maps (tests, and
anyone who wants to look at them).
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from .tiling import tile_cells, tile_reduce

NOISE_SAMPLE = 1024  # pixels per frame the level and noise are estimated from
PIECE_PIXELS = 1 << 15  # pixels filtered at once: the median's nine 128 kB arrays stay in the CPU's L2 cache

_RING = [(dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]

STATS = ("sharpness", "coldness")  # per-tile maxima stored in the shards and scored


def _med3(a: np.ndarray, b: np.ndarray, c: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Elementwise median of three: ``max(min(a, b), min(max(a, b), c))``, written to ``out``."""
    np.maximum(a, b, out=tmp)
    np.minimum(tmp, c, out=tmp)
    np.minimum(a, b, out=out)
    return np.maximum(out, tmp, out=out)


def _median8_padded(p: np.ndarray, work: np.ndarray | None = None) -> np.ndarray:
    """Median of the 8 neighbours of every inner pixel of a padded block (n, H+2, W+2) -> (n, H, W).

    The upper median of 8 values is the median of 9 with the 9th at +inf, so the ring's median is the
    3x3 median (sorted columns, then the median of the anti-diagonal: Smith, "Implementing median
    filters in XC4000E FPGAs", 1996) with the centre pixel replaced by +inf. Every vertical triple is
    sorted once and shared by the pixels left and right of it: 19 elementwise min/max per pixel, against
    27 for a selection network on the 8 values. Every operation runs on the block as one flat, contiguous
    array (neighbours are fixed offsets in it; what lands on the border is discarded), so narrow frames
    cost no more per pixel than wide ones.
    ``work``: optional scratch of at least 9 * n * (H + 2) * (W + 2) values, reused from call to call
    (fresh arrays cost a page fault per 4 kB each time); the result is a view into it.
    """
    n, h2, w2 = p.shape
    size = p.size
    if work is None or work.size < 9 * size:
        work = np.empty(9 * size, p.dtype)
    flat = np.ascontiguousarray(p).reshape(-1)
    k, m = size - 2 * w2, size - 2 * w2 - 2  # vertical triples (by their top pixel), centres (offset w2 + 1)
    lo, md, hi, t1, t2, x, y, z, full = (work[i * size:(i + 1) * size] for i in range(9))
    lo, md, hi, t1, t2 = lo[:k], md[:k], hi[:k], t1[:k], t2[:k]
    x, y, z, out = x[:m], y[:m], z[:m], full[w2 + 1:w2 + 1 + m]
    top, mid, bot = flat[:k], flat[w2:w2 + k], flat[2 * w2:]
    np.minimum(top, mid, out=t1)            # sort each vertical triple: lo <= md <= hi
    np.maximum(top, mid, out=t2)
    np.maximum(t2, bot, out=hi)
    np.minimum(t2, bot, out=t2)
    np.minimum(t1, t2, out=lo)
    np.maximum(t1, t2, out=md)
    c_lo, c_hi = t1[:m], t2[:m]             # the centre column: above and below, sorted (then +inf)
    np.minimum(flat[1:1 + m], flat[2 * w2 + 1:2 * w2 + 1 + m], out=c_lo)
    np.maximum(flat[1:1 + m], flat[2 * w2 + 1:2 * w2 + 1 + m], out=c_hi)
    np.maximum(lo[:m], lo[2:], out=x)       # the largest of the three column minima
    np.maximum(x, c_lo, out=x)
    _med3(md[:m], md[2:], c_hi, y, c_lo)    # the median of the middles
    np.minimum(hi[:m], hi[2:], out=z)       # the smallest of the maxima (the min with +inf: itself)
    _med3(x, y, z, out, c_hi)
    return full.reshape(n, h2, w2)[:, 1:-1, 1:-1]


def median8(images: np.ndarray) -> np.ndarray:
    """Median of the 8 neighbours of every pixel of a block (n, H, W), edges mirrored (as scipy's
    ``median_filter(mode="reflect")`` with a 3x3 ring footprint; of the two middle values, the upper)."""
    return _median8_padded(np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="symmetric"))


def _levels(images: np.ndarray, finite: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame of a block (n, H, W): the level (median of a regular sample of ~``NOISE_SAMPLE`` pixels;
    of all finite pixels for a frame with masked ones, 0 when it has none), whether it has masked pixels,
    and the flat positions of the sample the noise is measured on."""
    n = len(images)
    flat, ok = images.reshape(n, -1), finite.reshape(n, -1)
    dirty = ~ok.all(axis=1)
    step = max(1, flat.shape[1] // NOISE_SAMPLE)  # the median and MAD of ~1000 pixels: within ~5%
    level = row_median(flat[:, ::step]).astype(np.float32)
    for i in np.flatnonzero(dirty):
        level[i] = np.median(flat[i][ok[i]]) if ok[i].any() else 0.0
    return level, dirty, np.arange(0, flat.shape[1], step)


def _noise(sample: np.ndarray) -> np.ndarray:
    """1.4826 MAD of each row of the sampled excess (n, k), NaN (masked) values left out; NaN or 0 where
    it cannot be measured."""
    with warnings.catch_warnings():  # a frame with no finite pixel: NaN noise, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        if np.isnan(sample).any():
            return 1.4826 * np.nanmedian(np.abs(sample - np.nanmedian(sample, axis=1, keepdims=True)), axis=1)
        return 1.4826 * row_median(np.abs(sample - row_median(sample)[:, None]))


def _fill(images: np.ndarray, finite: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Masked pixels of a block replaced by their frame's level (so the filter sees no NaN)."""
    return np.where(finite, images, level[:, None, None])


def _pieces(n: int, h: int, w: int, row_edges: np.ndarray) -> Iterator[tuple[int, int, int, int]]:
    """``(f0, f1, c0, c1)``: frames f0..f1 and row cells c0..c1 of ~``PIECE_PIXELS`` pixels; a piece either
    holds whole frames or a band of whole row cells of one frame."""
    per_frame = max(1, PIECE_PIXELS // (h * w))
    ncell = len(row_edges) - 1
    if per_frame > 1 or ncell == 1:
        for f0 in range(0, n, per_frame):
            yield f0, min(n, f0 + per_frame), 0, ncell
        return
    rows = max(1, PIECE_PIXELS // w)
    for f in range(n):
        c0 = 0
        while c0 < ncell:
            c1 = int(np.searchsorted(row_edges, row_edges[c0] + rows, side="right")) - 1
            c1 = min(max(c1, c0 + 1), ncell)
            yield f, f + 1, c0, c1
            c0 = c1


def _band(images: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Rows r0..r1 of a block with one row and column of mirrored border around them (n, r1-r0+2, W+2)."""
    n, h, w = images.shape
    p = np.empty((n, r1 - r0 + 2, w + 2), images.dtype)
    p[:, 1:-1, 1:-1] = images[:, r0:r1]
    p[:, 0, 1:-1] = images[:, max(r0 - 1, 0)]
    p[:, -1, 1:-1] = images[:, min(r1, h - 1)]
    p[:, :, 0], p[:, :, -1] = p[:, :, 1], p[:, :, -2]
    return p


def _excess_pieces(images: np.ndarray, finite: np.ndarray, level: np.ndarray, dirty: np.ndarray,
                   row_edges: np.ndarray) -> Iterator[tuple[int, int, int, int, np.ndarray, np.ndarray]]:
    """``(f0, f1, c0, c1, pixels, excess)`` piece by piece (see :func:`_pieces`): the filled pixels and
    ``I - median8(I)`` (NaN where masked) of frames f0..f1, row cells c0..c1. ``excess`` lives in a scratch
    buffer reused by the next piece."""
    n, h, w = images.shape
    work = np.empty(0, np.float32)
    for f0, f1, c0, c1 in _pieces(n, h, w, row_edges):
        r0, r1 = int(row_edges[c0]), int(row_edges[c1])
        masked = bool(dirty[f0:f1].any())
        band = _band(images[f0:f1], r0, r1)
        if masked:  # the band is a copy: its masked pixels (border included) take their frame's level
            np.copyto(band, level[f0:f1, None, None], where=~np.isfinite(band))
        if work.size < 9 * band.size:  # grown to the largest piece, then reused
            work = np.empty(9 * band.size, np.float32)
        median = _median8_padded(band, work)
        pixels = band[:, 1:-1, 1:-1]
        excess = np.subtract(pixels, median, out=median)
        if masked:
            excess[~finite[f0:f1, r0:r1]] = np.nan
        yield f0, f1, c0, c1, pixels, excess


def outlier_peaks(images: np.ndarray, ys: list[int], xs: list[int], tile: int) -> dict[str, np.ndarray]:
    """Each tile's largest ``sharpness`` and ``coldness`` (see :func:`outlier_maps`) for a block (n, H, W)
    cut into tiles of side ``tile`` at rows ``ys`` and columns ``xs`` -> {stat: (n, len(ys), len(xs))}.

    Masked pixels, and tile area beyond the frame's edge, count as 0; so does every pixel of a frame with
    no spread. Equals the maximum of :func:`outlier_maps` over each tile, without holding the maps: both
    maps are a frame constant apart from the excess and the pixels themselves, so one pass keeps the
    excess's maximum and the pixels' minimum per cell, and the noise's sample.
    """
    images = np.asarray(images, dtype=np.float32)
    n, h, w = images.shape
    if n == 0:
        return {s: np.zeros((0, len(ys), len(xs)), np.float32) for s in STATS}
    finite = np.isfinite(images)
    level, dirty, where = _levels(images, finite)
    yc, xc = tile_cells(ys, tile, h), tile_cells(xs, tile, w)
    top = np.empty((n, len(yc.edges) - 1, len(xc.edges) - 1), np.float32)  # cell maxima of the excess
    low = np.empty_like(top)                                               # cell minima of the pixels
    sample = np.empty((n, len(where)), np.float32)
    for f0, f1, c0, c1, pixels, excess in _excess_pieces(images, finite, level, dirty, yc.edges):
        r0, r1 = int(yc.edges[c0]), int(yc.edges[c1])
        inside = (where >= r0 * w) & (where < r1 * w)
        sy, sx = np.divmod(where[inside] - r0 * w, w)
        sample[f0:f1, inside] = excess[:, sy, sx]
        edges = yc.edges[c0:c1 + 1] - r0
        top[f0:f1, c0:c1] = _cell_reduce(np.fmax, excess, edges, xc.edges)
        low[f0:f1, c0:c1] = _cell_reduce(np.fmin, pixels, edges, xc.edges)
    noise = _noise(sample)
    fallback = np.flatnonzero(~(noise > 0))  # no spread in the sample: the standard deviation of all the excess
    if len(fallback):  # rare (synthetic, mostly constant frames): a second pass over those frames
        moments = np.zeros((len(fallback), 3))
        for f0, f1, _, _, _, excess in _excess_pieces(images[fallback], finite[fallback], level[fallback],
                                                      dirty[fallback], yc.edges):
            e = excess.astype(np.float64)
            moments[f0:f1] += np.stack([np.isfinite(e).sum(axis=(1, 2)), np.nansum(e, axis=(1, 2)),
                                        np.nansum(e * e, axis=(1, 2))], axis=1)
        count = np.maximum(moments[:, 0], 1)
        spread = np.sqrt(np.maximum(moments[:, 2] / count - (moments[:, 1] / count) ** 2, 0))
        noise[fallback] = np.where(moments[:, 0] > 0, spread, np.nan)
    noise = noise[:, None, None]
    ok = noise > 0
    safe = np.where(ok, noise, 1.0)
    with np.errstate(invalid="ignore"):
        sharp = np.where(ok, tile_reduce(np.fmax, top, yc, xc) / safe, 0.0)
        cold = np.where(ok, (level[:, None, None] - tile_reduce(np.fmin, low, yc, xc)) / safe, 0.0)
    return {"sharpness": np.maximum(np.nan_to_num(sharp, nan=0.0), 0.0).astype(np.float32),
            "coldness": np.maximum(np.nan_to_num(cold, nan=0.0), 0.0).astype(np.float32)}


def _cell_reduce(op: np.ufunc, maps: np.ndarray, row_edges: np.ndarray, col_edges: np.ndarray) -> np.ndarray:
    """``op`` (``np.fmax``/``np.fmin``: NaN ignored) over each cell of a (n, H, W) block -> (n, cells_y, cells_x).

    Down the rows one contiguous reduction per row cell (4x faster than ``reduceat`` on that axis), then
    ``reduceat`` across the columns of the much smaller result."""
    rows = np.stack([op.reduce(maps[:, a:b], axis=1) for a, b in zip(row_edges[:-1], row_edges[1:])], axis=1)
    return op.reduceat(rows, col_edges[:-1], axis=2)


def row_median(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` of a finite (n, k) array, ~5x faster: one single-rank partition and a minimum
    (numpy partitions for both middle ranks at once, which is slow)."""
    k = a.shape[1]
    m = (k - 1) // 2
    p = np.partition(a, m, axis=1)
    if k % 2:
        return p[:, m]
    return (p[:, m] + p[:, m + 1:].min(axis=1)) / 2


def outlier_maps(images: np.ndarray) -> dict[str, np.ndarray]:
    """``sharpness = (I - median8(I)) / noise`` and ``coldness = (median(I) - I) / noise`` for a block
    (n, H, W) of frames; NaN pixels give NaN.

    The noise is the robust standard deviation (1.4826 MAD) of the excess map ``I - median8(I)``, so both
    are the same whatever the units, offset or gain of the frame. A frame with no spread at all (MAD = 0,
    e.g. a mostly empty synthetic frame) falls back to the plain standard deviation of the excess; a
    constant frame scores 0 everywhere. Masked pixels are filled with their frame's median before filtering.
    """
    images = np.asarray(images, dtype=np.float32)
    if len(images) == 0:
        return {s: np.empty(images.shape, np.float32) for s in STATS}
    finite = np.isfinite(images)
    level, dirty, where = _levels(images, finite)
    filled = _fill(images, finite, level) if dirty.any() else images
    excess = filled - median8(filled)
    excess[~finite] = np.nan
    noise = _noise(excess.reshape(len(images), -1)[:, where])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(excess.reshape(len(images), -1), axis=1)
        noise = np.where(noise > 0, noise, std)[:, None, None]
        safe = np.where(noise > 0, noise, 1.0)
        maps = {"sharpness": np.where(noise > 0, excess / safe, 0.0).astype(np.float32),
                "coldness": np.where(noise > 0, (level[:, None, None] - filled) / safe, 0.0).astype(np.float32)}
    for m in maps.values():
        m[~finite] = np.nan
    return maps
