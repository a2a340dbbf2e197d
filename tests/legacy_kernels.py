"""The ingest kernels as they were before they were vectorised (per frame, per tile, whole maps): the
references the fast versions are tested against. Not used by cnnpipe itself."""
from __future__ import annotations

import warnings

import numpy as np

_SORT8 = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (1, 2), (5, 6),
          (0, 4), (1, 5), (2, 6), (3, 7), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6)]


def median8(images):
    h, w = images.shape[1:]
    p = np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    v = [p[:, dy:dy + h, dx:dx + w].copy() for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    spare = np.empty_like(v[0])
    for i, j in _SORT8[:-3]:
        np.minimum(v[i], v[j], out=spare)
        np.maximum(v[i], v[j], out=v[j])
        v[i], spare = spare, v[i]
    return np.maximum(v[3], v[4], out=v[4])


def outlier_maps(images):
    """One frame at a time gives the per-frame statistics the new code uses for every block."""
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    finite = np.isfinite(images)
    clean = bool(finite.all())
    median, std = (np.median, np.std) if clean else (np.nanmedian, np.nanstd)
    step = max(1, images[0].size // 1024)
    with warnings.catch_warnings():
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


def normalise(image, method="percentile", percentiles=(0.5, 99.5), asinh_softening=0.1):
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
    return x.astype(np.float32), offset, scale


def tiles(image, tile, overlap):
    from cnnpipe.tiling import tile_starts

    h, w = image.shape
    if h < tile or w < tile:
        padded = np.full((max(h, tile), max(w, tile)), np.nan, dtype=np.float32)
        padded[:h, :w] = image
        image, h, w = padded, *padded.shape
    for y0 in tile_starts(h, tile, overlap):
        for x0 in tile_starts(w, tile, overlap):
            yield y0, x0, image[y0:y0 + tile, x0:x0 + tile]


def peak(maps):
    return np.nan_to_num(maps, nan=0.0).max(axis=(1, 2), initial=0.0).astype(np.float32)
