"""Sharpness: how far each pixel stands above its 8 neighbours, in units of the frame's noise.

A cosmic-ray hit deposits charge in one to a few pixels; a star is spread by the point-spread function,
so its brightest pixel stands only a little above the median of its neighbours. This is the core of
L.A.Cosmic's test (van Dokkum 2001): the fine-scale excess ``I - median8(I)`` against the noise. It is
measured on the raw pixel values at ingest, because the per-frame normalisation clips the brightest
pixels (a 30 000-count hit and a 6 000-count star core both become 1.0 after it).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_RING = np.ones((1, 3, 3), dtype=bool)
_RING[0, 1, 1] = False


def sharpness_map(images: np.ndarray) -> np.ndarray:
    """``(I - median of the 8 neighbours) / noise`` for a block (n, H, W); NaN pixels give NaN.

    The noise is the robust standard deviation (1.4826 MAD) of the excess map itself, so the measure is
    the same whatever the units, offset or gain of the frame. A frame with no spread at all (MAD = 0, e.g.
    a mostly empty synthetic frame) falls back to the plain standard deviation of the excess; a constant
    frame scores 0 everywhere.
    """
    images = np.asarray(images, dtype=np.float32)
    finite = np.isfinite(images)
    median = np.array([np.median(img[ok]) if ok.any() else 0.0 for img, ok in zip(images, finite)],
                      dtype=np.float32)
    filled = np.where(finite, images, median[:, None, None])
    excess = filled - ndimage.median_filter(filled, footprint=_RING, mode="reflect")
    out = np.full(images.shape, np.nan, dtype=np.float32)
    for i, (e, ok) in enumerate(zip(excess, finite)):
        if not ok.any():
            continue
        v = e[ok]
        noise = 1.4826 * np.median(np.abs(v - np.median(v)))
        noise = noise if noise > 0 else v.std()
        out[i] = np.where(ok, e / noise if noise > 0 else 0.0, np.nan)
    return out
