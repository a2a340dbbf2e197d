"""Outlier pixels, measured on the raw pixel values at ingest, in units of each frame's noise.

- ``sharpness``: how far a pixel stands above the median of its 8 neighbours. A cosmic-ray hit deposits
  charge in one to a few pixels; a star is spread by the point-spread function, so its brightest pixel
  stands only a little above its neighbours. This is the core of L.A.Cosmic's test (van Dokkum 2001): the
  fine-scale excess ``I - median8(I)`` against the noise.
- ``coldness``: how far a pixel lies below the frame's median level: dead pixels and bad columns (a deficit,
  which the learned components, all looking for excess signal, underweight).

Both are measured before normalisation, because it clips: a 30 000-count hit and a 6 000-count star core
both become 1.0, and so does the difference between a dead column and a dark patch of sky.
"""
from __future__ import annotations

import warnings

import numpy as np

NOISE_SAMPLE = 1024  # pixels per frame the noise is estimated from

# Batcher's odd-even merge sort of 8 values: 19 compare-exchanges, each an elementwise min/max over whole
# arrays (equal to scipy.ndimage.median_filter with a 3x3 ring footprint: tests/test_pixel_outliers.py)
_SORT8 = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (1, 2), (5, 6),
          (0, 4), (1, 5), (2, 6), (3, 7), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6)]


def median8(images: np.ndarray) -> np.ndarray:
    """Median of the 8 neighbours of every pixel of a block (n, H, W), edges mirrored (as scipy's
    ``median_filter(mode="reflect")`` with a 3x3 ring footprint; of the two middle values, the upper)."""
    h, w = images.shape[1:]
    p = np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    v = [p[:, dy:dy + h, dx:dx + w].copy() for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    spare = np.empty_like(v[0])
    for i, j in _SORT8[:-3]:  # in place: no allocation per compare-exchange
        np.minimum(v[i], v[j], out=spare)
        np.maximum(v[i], v[j], out=v[j])
        v[i], spare = spare, v[i]
    return np.maximum(v[3], v[4], out=v[4])  # of the last layer only the 5th smallest is needed


STATS = ("sharpness", "coldness")  # per-tile maxima stored in the shards and scored


def outlier_maps(images: np.ndarray) -> dict[str, np.ndarray]:
    """``sharpness = (I - median8(I)) / noise`` and ``coldness = (median(I) - I) / noise`` for a block
    (n, H, W) of frames; NaN pixels give NaN.

    The noise is the robust standard deviation (1.4826 MAD) of the excess map ``I - median8(I)``, so both
    are the same whatever the units, offset or gain of the frame. A frame with no spread at all (MAD = 0,
    e.g. a mostly empty synthetic frame) falls back to the plain standard deviation of the excess; a
    constant frame scores 0 everywhere. Masked pixels are filled with their frame's median before filtering.
    """
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    if n == 0:
        return {s: np.empty(images.shape, np.float32) for s in STATS}
    finite = np.isfinite(images)
    clean = bool(finite.all())  # the common case: plain (fast) statistics, no fill
    median, std = (np.median, np.std) if clean else (np.nanmedian, np.nanstd)
    step = max(1, images[0].size // NOISE_SAMPLE)  # the median and MAD of ~1000 pixels: within ~5%
    with warnings.catch_warnings():  # a frame with no finite pixel: NaN statistics, NaN maps, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        if clean:
            filled = images
            level = median(images.reshape(n, -1)[:, ::step], axis=1)
        else:
            level = np.nan_to_num(median(np.where(finite, images, np.nan).reshape(n, -1), axis=1))
            filled = np.where(finite, images, level[:, None, None].astype(np.float32))
        excess = filled - median8(filled)
        if not clean:
            excess[~finite] = np.nan
        flat = excess.reshape(n, -1)
        sample = flat[:, ::step]
        noise = 1.4826 * median(np.abs(sample - median(sample, axis=1, keepdims=True)), axis=1)
        noise = np.where(noise > 0, noise, std(flat, axis=1))[:, None, None]
        safe = np.where(noise > 0, noise, 1.0)
        maps = {"sharpness": np.where(noise > 0, excess / safe, 0.0).astype(np.float32),
                "coldness": np.where(noise > 0, (level[:, None, None] - filled) / safe, 0.0).astype(np.float32)}
    if not clean:
        for m in maps.values():
            m[~finite] = np.nan
    return maps
