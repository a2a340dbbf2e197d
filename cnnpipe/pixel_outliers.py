"""Outlier pixels, measured on the raw pixel values at ingest, in units of each frame's noise.

- ``sharpness``: how far a pixel stands above the median of its 8 neighbours. A cosmic-ray hit deposits
  charge in one to a few pixels; a star is spread by the point-spread function, so its brightest pixel
  stands only a little above its neighbours. This is the core of L.A.Cosmic's test (van Dokkum 2001): the
  fine-scale excess ``I - median8(I)`` against the noise, and, like L.A.Cosmic's contrast test against
  the fine structure, against a fraction ``relative`` of the pixel's own signal above the frame's level:
  ``(I - median8(I)) / (noise + relative * max(I - level, 0))``. A bright star's core stands hundreds of
  noise units above its ring (it does not in relative terms: at most ``(1 - ring / peak) / relative``),
  so busy star fields no longer fill the top of the ranking; a hit, whose ring is sky, reaches up to
  ``1 / relative`` (dev figures in README).
- ``coldness``: how far a pixel lies below the frame's median level: dead pixels and bad columns (a deficit,
  which the learned components, all looking for excess signal, underweight).

Both are measured before normalisation, because it clips: a 30 000-count hit and a 6 000-count star core
both become 1.0, and so does the difference between a dead column and a dark patch of sky.

Ingestion needs only each tile's largest value of the two maps (:func:`outlier_peaks`), never the maps:
after the noise is measured on a sample, one compiled pass (numba) filters the frames row by row and
reduces each row to per-cell maxima at once, ~4x faster than whole-array NumPy operations (19 min/max
passes through memory). :func:`outlier_maps` gives the full maps (tests, and anyone who wants them)."""
from __future__ import annotations

import functools
import warnings

import numpy as np

from .normalise import finite_rows
from .tiling import tile_cells, tile_reduce

NOISE_SAMPLE = 1024  # pixels per frame the level and noise are estimated from
STATS = ("sharpness", "coldness")  # per-tile maxima stored in the shards and scored

_NONE = np.empty((0, 0, 0), np.float32)  # "no full median map wanted" for :func:`_ring_pass`


def _ring_pass(images, level, noise, relative, row_cell, col_edges, top, low, med):  # pragma: no cover (compiled)
    """One pass over a block (n, H, W), row by row: each pixel's ring median (8 neighbours, edges mirrored,
    masked pixels (NaN, +-inf) read as the frame's ``level``), reduced at once to what ingestion keeps:
    ``top[f, row_cell[y], j]`` the largest sharpness ``(I - median8(I)) / (noise + relative * max(I - level,
    0))`` over the unmasked pixels of each cell (columns ``col_edges[j]:col_edges[j+1]``; -inf if none;
    exact where it is positive, which is all ingestion keeps),
    ``low`` the smallest pixel (masked = level), ``med`` (unless empty) the median map; ``top``/``low`` come
    in at -inf/+inf. The ring median is the 3x3 median with the centre at +inf (Smith 1996): sorted
    vertical triples shared by neighbours, 19 compare-selects a pixel."""
    n, h, w = images.shape
    full = med.size > 0
    lo, md, hi = np.empty(w + 2, np.float32), np.empty(w + 2, np.float32), np.empty(w + 2, np.float32)
    a, b, c = np.empty(w, np.float32), np.empty(w, np.float32), np.empty(w, np.float32)
    ex = np.empty(w, np.float32)
    inf, zero, rel = np.float32(np.inf), np.float32(0.0), np.float32(relative)
    for f in range(n):
        lv, nz = np.float32(level[f]), np.float32(noise[f])
        for y in range(h):
            above, below = images[f, max(y - 1, 0)], images[f, min(y + 1, h - 1)]
            row = images[f, y]
            for x in range(w):
                p, q, r = above[x], row[x], below[x]
                p = p if abs(p) < inf else lv
                q = q if abs(q) < inf else lv
                r = r if abs(r) < inf else lv
                a[x], c[x], b[x] = p, q, r
                t1 = p if p < q else q
                t2 = p if p > q else q
                hi[x + 1] = t2 if t2 > r else r
                t2 = t2 if t2 < r else r
                lo[x + 1] = t1 if t1 < t2 else t2
                md[x + 1] = t1 if t1 > t2 else t2
            lo[0], md[0], hi[0], lo[w + 1], md[w + 1], hi[w + 1] = lo[1], md[1], hi[1], lo[w], md[w], hi[w]
            for x in range(w):
                p, r = a[x], b[x]
                c_lo = p if p < r else r
                c_hi = p if p > r else r
                u = lo[x] if lo[x] > lo[x + 2] else lo[x + 2]
                u = u if u > c_lo else c_lo                    # the largest of the column minima
                s = md[x] if md[x] > md[x + 2] else md[x + 2]
                t = md[x] if md[x] < md[x + 2] else md[x + 2]
                s = s if s < c_hi else c_hi
                v = t if t > s else s                          # the median of the middles
                z = hi[x] if hi[x] < hi[x + 2] else hi[x + 2]  # the smallest of the maxima
                s = u if u > v else v
                t = u if u < v else v
                s = s if s < z else z
                m = t if t > s else s                          # the median of the three
                if full:
                    med[f, y, x] = m
                ex[x] = c[x] - m if abs(row[x]) < inf else -inf
            ry = row_cell[y]
            for j in range(len(col_edges) - 1):
                hi_ex, lo_px = top[f, ry, j], low[f, ry, j]
                for x in range(col_edges[j], col_edges[j + 1]):
                    if ex[x] > hi_ex * nz:  # it may beat the best: divide (<= ex / nz; most pixels skip)
                        r = ex[x] / (nz + rel * max(c[x] - lv, zero))
                        hi_ex = hi_ex if hi_ex > r else r
                    lo_px = lo_px if lo_px < c[x] else c[x]
                top[f, ry, j], low[f, ry, j] = hi_ex, lo_px


def _sample_pass(images, level, step, sample):  # pragma: no cover (compiled)
    """``sample[f, s]``: the excess ``I - median8(I)`` at flat position ``s * step`` of frame ``f`` (NaN where
    that pixel is masked), filtered exactly as :func:`_ring_pass` does (edges mirrored, masked neighbours
    read as the frame's ``level``, the upper of the two middle neighbours). The 8 neighbours are sorted by
    a 19-comparator network (the fewest for 8 values): no branches, ~9x faster than an insertion sort."""
    n, h, w = images.shape
    inf = np.float32(np.inf)
    for f in range(n):
        lv = np.float32(level[f])
        y, x = 0, -step
        for s in range(sample.shape[1]):
            x += step                              # the next sampled pixel, without a division
            while x >= w:
                x -= w
                y += 1
            c = images[f, y, x]
            if not abs(c) < inf:
                sample[f, s] = np.nan
                continue
            u, d, left, right = max(y - 1, 0), min(y + 1, h - 1), max(x - 1, 0), min(x + 1, w - 1)
            a0, a1, a2 = images[f, u, left], images[f, u, x], images[f, u, right]
            a3, a4 = images[f, y, left], images[f, y, right]
            a5, a6, a7 = images[f, d, left], images[f, d, x], images[f, d, right]
            a0, a1, a2, a3 = (a0 if abs(a0) < inf else lv), (a1 if abs(a1) < inf else lv), \
                (a2 if abs(a2) < inf else lv), (a3 if abs(a3) < inf else lv)
            a4, a5, a6, a7 = (a4 if abs(a4) < inf else lv), (a5 if abs(a5) < inf else lv), \
                (a6 if abs(a6) < inf else lv), (a7 if abs(a7) < inf else lv)
            a0, a1 = min(a0, a1), max(a0, a1); a2, a3 = min(a2, a3), max(a2, a3)
            a4, a5 = min(a4, a5), max(a4, a5); a6, a7 = min(a6, a7), max(a6, a7)
            a0, a2 = min(a0, a2), max(a0, a2); a1, a3 = min(a1, a3), max(a1, a3)
            a4, a6 = min(a4, a6), max(a4, a6); a5, a7 = min(a5, a7), max(a5, a7)
            a1, a2 = min(a1, a2), max(a1, a2); a5, a6 = min(a5, a6), max(a5, a6)
            a0, a4 = min(a0, a4), max(a0, a4); a3, a7 = min(a3, a7), max(a3, a7)
            a1, a5 = min(a1, a5), max(a1, a5); a2, a6 = min(a2, a6), max(a2, a6)
            a1, a4 = min(a1, a4), max(a1, a4); a3, a6 = min(a3, a6), max(a3, a6)
            a2, a4 = min(a2, a4), max(a2, a4); a3, a5 = min(a3, a5), max(a3, a5)
            a3, a4 = min(a3, a4), max(a3, a4)
            sample[f, s] = c - a4


@functools.cache
def _compiled(kernel: str = "ring"):
    """:func:`_ring_pass` (``ring``) or :func:`_sample_pass` (``sample``) compiled (numba, cached on disk
    beside this module), on first use: the jobs that only import :data:`STATS` (preprocess, score) never
    load numba."""
    import numba

    return numba.njit(cache=True, nogil=True)({"ring": _ring_pass, "sample": _sample_pass}[kernel])


def _cells(images: np.ndarray, level: np.ndarray, row_edges: np.ndarray, col_edges: np.ndarray,
           noise: np.ndarray | None = None, relative: float = 0.0, med: np.ndarray = _NONE
           ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_ring_pass` with its outputs allocated: ``(top, low)``, per-cell sharpness maxima and pixel
    minima (n, cells_y, cells_x); ``noise`` None: 1 (the maxima of the bare excess)."""
    n = len(images)
    shape = (n, len(row_edges) - 1, len(col_edges) - 1)
    top, low = np.full(shape, -np.inf, np.float32), np.full(shape, np.inf, np.float32)
    row_cell = np.repeat(np.arange(shape[1]), np.diff(row_edges))
    noise = np.ones(n, np.float32) if noise is None else noise.astype(np.float32)
    _compiled()(np.ascontiguousarray(images, np.float32), level.astype(np.float32), noise, relative, row_cell,
               np.asarray(col_edges, np.int64), top, low, med)
    return top, low


def _sampled_excess(images: np.ndarray, level: np.ndarray, step: int) -> np.ndarray:
    """:func:`_sample_pass` with its output allocated: (n, ceil(H * W / step)), what the noise is measured on,
    without filtering the whole frame first."""
    n, h, w = images.shape
    sample = np.empty((n, -(-h * w // step)), np.float32)
    _compiled("sample")(np.ascontiguousarray(images, np.float32), level.astype(np.float32), step, sample)
    return sample


def median8(images: np.ndarray) -> np.ndarray:
    """Median of the 8 neighbours of every pixel of a block (n, H, W), edges mirrored (as scipy's
    ``median_filter(mode="reflect")`` with a 3x3 ring footprint; of the two middle values, the upper).
    Masked pixels (NaN, +-inf) are read as 0."""
    images = np.asarray(images, dtype=np.float32)
    med = np.empty(images.shape, np.float32)
    if images.size:
        n, h, w = images.shape
        _cells(images, np.zeros(n, np.float32), np.array([0, h]), np.array([0, w]), med=med)
    return med


def _levels(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of a block (n, H, W): the level (median of a regular sample of ~``NOISE_SAMPLE`` pixels;
    of all finite pixels for a frame with masked ones, 0 when it has none) and the sample's step."""
    n = len(images)
    flat = images.reshape(n, -1)
    step = max(1, flat.shape[1] // NOISE_SAMPLE)  # the median and MAD of ~1000 pixels: within ~5%
    level = row_median(flat[:, ::step]).astype(np.float32)  # (garbage for masked frames: replaced below)
    for i in np.flatnonzero(~finite_rows(flat)):
        ok = np.isfinite(flat[i])
        level[i] = np.median(flat[i][ok]) if ok.any() else 0.0
    return level, step


def _noise(sample: np.ndarray) -> np.ndarray:
    """1.4826 MAD of each row of the sampled excess (n, k), NaN (masked) values left out; NaN or 0 where
    it cannot be measured."""
    with warnings.catch_warnings():  # a frame with no finite pixel: NaN noise, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        if np.isnan(sample).any():
            return 1.4826 * np.nanmedian(np.abs(sample - np.nanmedian(sample, axis=1, keepdims=True)), axis=1)
        return 1.4826 * row_median(np.abs(sample - row_median(sample)[:, None]))


def _frame_noise(images: np.ndarray, level: np.ndarray, step: int) -> np.ndarray:
    """Each frame's noise: the robust spread of its sampled excess or, where that is 0 (a mostly constant
    synthetic frame), the standard deviation of all of it; NaN or 0 where neither can be measured."""
    noise = _noise(_sampled_excess(images, level, step))
    fallback = np.flatnonzero(~(noise > 0))
    if len(fallback):  # rare: a filtering pass over those frames
        noise[fallback] = _excess_std(images[fallback], level[fallback])
    return noise


def outlier_peaks(images: np.ndarray, ys: list[int], xs: list[int], tile: int,
                  relative: float = 0.0) -> dict[str, np.ndarray]:
    """Each tile's largest ``sharpness`` and ``coldness`` (see :func:`outlier_maps`) for a block (n, H, W)
    cut into tiles of side ``tile`` at rows ``ys`` and columns ``xs`` -> {stat: (n, len(ys), len(xs))}.

    Masked pixels, and tile area beyond the frame's edge, count as 0; so does every pixel of a frame with
    no spread. Equals the maximum of :func:`outlier_maps` over each tile, without holding the maps: the
    noise is measured on a sample first, then one pass keeps each cell's largest sharpness and smallest
    pixel (coldness is a frame constant apart from the pixel).
    """
    images = np.asarray(images, dtype=np.float32)
    n, h, w = images.shape
    if n == 0:
        return {s: np.zeros((0, len(ys), len(xs)), np.float32) for s in STATS}
    level, step = _levels(images)
    noise = _frame_noise(images, level, step)
    ok = noise > 0
    safe = np.where(ok, noise, 1.0)
    yc, xc = tile_cells(ys, tile, h), tile_cells(xs, tile, w)
    top, low = _cells(images, level, yc.edges, xc.edges, safe, relative)
    ok, safe = ok[:, None, None], safe[:, None, None]
    with np.errstate(invalid="ignore"):
        sharp = np.where(ok, tile_reduce(np.fmax, top, yc, xc), 0.0)
        cold = np.where(ok, (level[:, None, None] - tile_reduce(np.fmin, low, yc, xc)) / safe, 0.0)
    return {"sharpness": np.maximum(np.nan_to_num(sharp, nan=0.0, neginf=0.0), 0.0).astype(np.float32),
            "coldness": np.maximum(np.nan_to_num(cold, nan=0.0), 0.0).astype(np.float32)}


def _excess_std(images: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Standard deviation of the excess ``I - median8(I)`` over the unmasked pixels of each frame (NaN for
    a frame with none): the noise of frames whose sampled MAD is 0."""
    med = np.empty(images.shape, np.float32)
    n, h, w = images.shape
    _cells(images, level, np.array([0, h]), np.array([0, w]), med=med)
    excess = np.where(np.isfinite(images), images - med, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(excess.reshape(n, -1).astype(np.float64), axis=1)


def row_median(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` of a finite (n, k) array, ~5x faster: one single-rank partition and a minimum
    (numpy partitions for both middle ranks at once, which is slow)."""
    k = a.shape[1]
    m = (k - 1) // 2
    p = np.partition(a, m, axis=1)
    if k % 2:
        return p[:, m]
    return (p[:, m] + p[:, m + 1:].min(axis=1)) / 2


def outlier_maps(images: np.ndarray, relative: float = 0.0) -> dict[str, np.ndarray]:
    """``sharpness = (I - median8(I)) / (noise + relative * max(I - level, 0))`` and ``coldness = (level - I)
    / noise`` for a block (n, H, W) of frames, ``level`` the frame's median; NaN pixels give NaN.

    The noise is the robust standard deviation (1.4826 MAD) of the excess map ``I - median8(I)``, so both
    are the same whatever the units, offset or gain of the frame. A frame with no spread at all (MAD = 0,
    e.g. a mostly empty synthetic frame) falls back to the plain standard deviation of the excess; a
    constant frame scores 0 everywhere. Masked pixels are filled with their frame's median before filtering.
    """
    images = np.asarray(images, dtype=np.float32)
    if len(images) == 0:
        return {s: np.empty(images.shape, np.float32) for s in STATS}
    n, h, w = images.shape
    finite = np.isfinite(images)
    level, step = _levels(images)
    med = np.empty(images.shape, np.float32)
    _cells(images, level, np.array([0, h]), np.array([0, w]), med=med)
    filled = np.where(finite, images, level[:, None, None])
    excess = np.where(finite, filled - med, np.nan)
    noise = _noise(_sampled_excess(images, level, step))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(excess.reshape(len(images), -1), axis=1)
        noise = np.where(noise > 0, noise, std)[:, None, None]
        safe = np.where(noise > 0, noise, 1.0)
        own = relative * np.maximum(filled - level[:, None, None], 0.0)
        maps = {"sharpness": np.where(noise > 0, excess / (safe + own), 0.0).astype(np.float32),
                "coldness": np.where(noise > 0, (level[:, None, None] - filled) / safe, 0.0).astype(np.float32)}
    for m in maps.values():
        m[~finite] = np.nan
    return maps
