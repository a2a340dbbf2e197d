"""Per-frame intensity normalisation; masked (NaN) pixels are ignored by the statistics and stay NaN."""
from __future__ import annotations

import numpy as np


def normalise(image: np.ndarray, method: str = "percentile", percentiles=(0.5, 99.5),
              asinh_softening: float = 0.1) -> tuple[np.ndarray, float, float]:
    """Return ``(normalised, offset, scale)`` with ``normalised = f((image - offset) / scale)``.

    - ``percentile``: offset, scale from the [lo, hi] percentiles; result clipped to [0, 1];
    - ``asinh``: the same, then ``asinh(x / a) / asinh(1 / a)`` (a = softening), which lifts faint
      structure while keeping bright sources below 1;
    - ``zscore``: offset = mean, scale = standard deviation (not clipped).
    Non-finite pixels (NaN, +-inf) become NaN. A frame with no finite pixel raises ValueError.
    """
    img = np.where(np.isfinite(image), image, np.nan).astype(np.float32, copy=False)
    valid = img[np.isfinite(img)]
    if valid.size == 0:
        raise ValueError("all pixels are NaN or inf")
    if method == "zscore":
        offset, scale = float(valid.mean()), float(valid.std())
        scale = scale if scale > 0 else 1.0
        return (img - offset) / scale, offset, scale
    lo, hi = np.percentile(valid, percentiles)
    offset, scale = float(lo), float(hi - lo) if hi > lo else 1.0
    x = np.clip((img - offset) / scale, 0.0, 1.0)
    if method == "asinh":
        x = np.arcsinh(x / asinh_softening) / np.arcsinh(1.0 / asinh_softening)
    elif method != "percentile":
        raise ValueError(f"unknown normalisation '{method}'")
    return x.astype(np.float32), offset, scale


def normalise_block(images: np.ndarray, method: str = "percentile", percentiles=(0.5, 99.5),
                    asinh_softening: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """:func:`normalise` for a block (n, H, W) of frames, each with its own statistics.

    Returns ``(normalised, usable)``; ``usable[i]`` is False for a frame with no finite pixel (its output
    is all NaN). Vectorised over the block when no pixel is masked (the common case), frame by frame
    otherwise.
    """
    n = len(images)
    if n and np.isfinite(images).all():
        flat = images.reshape(n, -1)
        if method == "zscore":
            offset, scale = flat.mean(axis=1), flat.std(axis=1)
            scale[scale <= 0] = 1.0
            return ((images - offset[:, None, None]) / scale[:, None, None]).astype(np.float32), np.ones(n, bool)
        lo, hi = np.percentile(flat, percentiles, axis=1)
        scale = np.where(hi > lo, hi - lo, 1.0)
        x = np.clip((images - lo[:, None, None]) / scale[:, None, None], 0.0, 1.0)
        if method == "asinh":
            x = np.arcsinh(x / asinh_softening) / np.arcsinh(1.0 / asinh_softening)
        return x.astype(np.float32), np.ones(n, bool)
    out = np.full(images.shape, np.nan, dtype=np.float32)
    usable = np.zeros(n, bool)
    for i, img in enumerate(images):
        try:
            out[i] = normalise(img, method, percentiles, asinh_softening)[0]
            usable[i] = True
        except ValueError:
            pass
    return out, usable
