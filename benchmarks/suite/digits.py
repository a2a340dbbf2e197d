"""scikit-learn's handwritten digits (real 8x8 images, 0..16) in the anomaly-detection protocols.

- one-class-vs-rest: digit ``d`` is normal (all its images in the half), one image of each other digit
  is the anomaly (9 anomalies, ~9%; the literature's protocol with the anomalies thinned to a realistic
  fraction); run for each d, report the mean AUROC over the ten.
- six-vs-nine: digits 0-8 normal, 3% 9s anomalous (a 9 is a rotated 6: augmentation must not rotate).

Halves (``split.DIGITS_HALF``): half 0 = images 0..898 (dev), half 1 = images 899..1796 (held-out).

How cnnpipe sees them: as a user would feed 8x8 images to a model with 64x64 default tiles, each image is
upsampled (bilinear, ``skimage.transform.resize``) to ``UPSAMPLE`` x ``UPSAMPLE`` and scaled to 0..1, and
the run's tile size is set to that side. The baselines use the original 64 pixel values.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from skimage.transform import resize
from sklearn.datasets import load_digits

UPSAMPLE = 32


def half_indices(half: int) -> np.ndarray:
    """Indices into load_digits() of one half (0: first 899 images, 1: the rest)."""
    n = len(load_digits().target)
    cut = (n + 1) // 2
    return np.arange(0, cut) if half == 0 else np.arange(cut, n)


def one_vs_rest(normal: int, half: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """All images of digit ``normal`` in the half plus one random image of each other digit, shuffled."""
    d = load_digits()
    rng = np.random.default_rng(seed * 100 + normal)
    idx = half_indices(half)
    odd = [int(rng.choice(idx[d.target[idx] == c])) for c in range(10) if c != normal]
    return _assemble(d, np.concatenate([idx[d.target[idx] == normal], odd]), lambda t: t != normal, rng)


def six_vs_nine(half: int, seed: int, fraction: float = 0.03) -> tuple[np.ndarray, pd.DataFrame]:
    """Digits 0-8 of the half are normal; ``fraction`` of the set are 9s (anomalous)."""
    d = load_digits()
    rng = np.random.default_rng(seed * 100 + 69)
    idx = half_indices(half)
    normal = idx[d.target[idx] != 9]
    k = int(round(len(normal) * fraction / (1 - fraction)))
    nines = rng.choice(idx[d.target[idx] == 9], size=k, replace=False)
    return _assemble(d, np.concatenate([normal, nines]), lambda t: t == 9, rng)


def _assemble(d, chosen: np.ndarray, is_odd, rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    chosen = rng.permutation(chosen)
    target = d.target[chosen]
    label = np.array([int(is_odd(t)) for t in target])
    truth = pd.DataFrame({"frame": np.arange(len(chosen)), "label": label,
                          "cls": [f"digit_{t}" if o else "normal" for t, o in zip(target, label)],
                          "detail": [json.dumps({"image": int(i)}) for i in chosen]})
    return d.images[chosen].astype(np.float32), truth


def upsample(images: np.ndarray, side: int = UPSAMPLE) -> np.ndarray:
    """8x8 images (0..16) -> side x side, bilinear, 0..1: what cnnpipe is given."""
    return np.stack([resize(im / 16.0, (side, side), order=1, anti_aliasing=False) for im in images]).astype(np.float32)
