"""Detector set B: straight tracks (cosmic muons, no field) through a 48x48-channel detector.

A different simulator from set A: 1-2 tracks (1 + Poisson(0.4)) enter at the top and leave downwards,
zenith angle drawn from cos^2; the charge in each channel is the path length in it (``skimage.draw.line_aa``
coverage) times a log-normal fluctuation. Read-out: capacitive crosstalk of ``CROSSTALK`` to the left and
right neighbour, pedestal noise, a fixed set of dead channels (``DEAD_COLUMNS``, always zero: part of
normal data), zero suppression below ``THRESHOLD`` and an ADC of ``ADC_STEP``.

Anomaly classes:
- ``kink``: a large-angle scatter (20-50 degrees) at 30-70% of the track's path inside the frame.
- ``stub``: a stopping particle: a 6-15 channel track starting and ending inside, its charge rising
  towards the end (Bragg peak).
- ``two_prong``: a decay: two tracks from one point inside the detector, opening angle 15-50 degrees.
- ``shower``: a track that starts an electromagnetic cascade (20-50% of its path inside the frame): 8-20
  branches fanning downwards.
- ``pileup``: a burst of 5-9 tracks in one read-out window.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
from skimage.draw import line_aa

from .files import render_set

CLASSES = ["kink", "stub", "two_prong", "shower", "pileup"]
SIZE = 48
DEAD_COLUMNS = (7, 30)
CROSSTALK = 0.05
PEDESTAL_NOISE = 0.03
THRESHOLD = 0.08
ADC_STEP = 0.01


def segment(img: np.ndarray, y0: float, x0: float, y1: float, x1: float, rng: np.random.Generator,
            charge: float = 1.0, bragg: bool = False) -> None:
    """Add a straight segment's charge (line_aa coverage x log-normal) to ``img``, clipped to the frame;
    ``bragg``: the charge rises to 4x towards the end (a stopping particle)."""
    size = img.shape[0]
    rr, cc, val = line_aa(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
    q = charge * np.ones(len(rr))
    if bragg:
        q *= 1 + 3 * (np.hypot(rr - y0, cc - x0) / max(np.hypot(y1 - y0, x1 - x0), 1)).clip(0, 1) ** 1.5
    keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
    np.add.at(img, (rr[keep], cc[keep]), val[keep] * q[keep] * rng.lognormal(0, 0.3, keep.sum()))


def _zenith(rng: np.random.Generator) -> float:
    """Angle from the vertical, cos^2-distributed (rejection sampling), within +-60 degrees."""
    while True:
        t = rng.uniform(-np.pi / 3, np.pi / 3)
        if rng.random() < np.cos(t) ** 2:
            return float(t)


def _inside_length(y0: float, x0: float, t: float, size: int) -> float:
    """Path length from (y0, x0) at angle ``t`` from the vertical until the track leaves the frame (bottom
    or side): a kink or a shower is placed on this part of its track, or it could fall outside the detector."""
    exits = [(size - 1 - y0) / max(np.cos(t), 1e-9)]
    if abs(np.sin(t)) > 1e-9:
        exits.append(((size - 1 - x0) if np.sin(t) > 0 else x0) / abs(np.sin(t)))
    return max(0.0, float(min(exits)))      # a track entering beyond the last column (x0 > size - 1): 0


def _through(size: int, rng: np.random.Generator) -> tuple[float, float, float, float, float]:
    """A track from the top edge downwards: (y0, x0, y1, x1, angle), extended past the frame."""
    t, x0 = _zenith(rng), rng.uniform(0, size)
    length = 2 * size
    return 0.0, x0, length * np.cos(t), x0 + length * np.sin(t), t


def readout(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crosstalk, pedestal noise, dead channels, zero suppression and ADC rounding."""
    out = img.copy()
    out[:, 1:] += CROSSTALK * img[:, :-1]
    out[:, :-1] += CROSSTALK * img[:, 1:]
    out += rng.normal(0, PEDESTAL_NOISE, out.shape)
    out[:, list(DEAD_COLUMNS)] = 0.0
    out[out < THRESHOLD] = 0.0
    return np.round(out / ADC_STEP) * ADC_STEP


def event(rng: np.random.Generator, cls: str, size: int = SIZE) -> tuple[np.ndarray, dict]:
    img = np.zeros((size, size))
    n = 5 + int(rng.integers(0, 5)) if cls == "pileup" else 1 + min(int(rng.poisson(0.4)), 2)
    tracks = [_through(size, rng) for _ in range(n)]
    detail: dict = {"tracks": n} if cls == "pileup" else {}
    if cls == "kink":
        y0, x0, y1, x1, t = tracks.pop(0)
        f = rng.uniform(0.3, 0.7) * _inside_length(y0, x0, t, size)
        ky, kx = y0 + f * np.cos(t), x0 + f * np.sin(t)
        t2 = t + np.deg2rad(rng.uniform(20, 50)) * rng.choice([-1, 1])
        segment(img, y0, x0, ky, kx, rng)
        segment(img, ky, kx, ky + 2 * size * np.cos(t2), kx + 2 * size * np.sin(t2), rng)
        detail = {"at": [float(ky), float(kx)], "turn_deg": float(np.rad2deg(t2 - t))}
    elif cls == "stub":
        y, x = rng.uniform(8, size - 8, 2)
        t, length = rng.uniform(0, 2 * np.pi), rng.uniform(6, 15)
        segment(img, y, x, y + length * np.sin(t), x + length * np.cos(t), rng, bragg=True)
        detail = {"start": [float(y), float(x)], "length": float(length)}
    elif cls == "two_prong":
        y, x = rng.uniform(size * 0.2, size * 0.6), rng.uniform(size * 0.2, size * 0.8)
        t, half = _zenith(rng), np.deg2rad(rng.uniform(7.5, 25))
        for s in (-1, 1):
            segment(img, y, x, y + 2 * size * np.cos(t + s * half), x + 2 * size * np.sin(t + s * half), rng)
        detail = {"vertex": [float(y), float(x)]}
    elif cls == "shower":
        y0, x0, _, _, t = tracks.pop(0)
        f = rng.uniform(0.2, 0.5) * min(size, _inside_length(y0, x0, t, size))
        sy, sx = y0 + f * np.cos(t), x0 + f * np.sin(t)
        segment(img, y0, x0, sy, sx, rng)
        for _ in range(int(rng.integers(8, 21))):
            a, length = t + rng.normal(0, 0.35), rng.uniform(4, 20)
            by, bx = sy + rng.uniform(0, 6) * np.cos(t), sx + rng.uniform(0, 6) * np.sin(t)
            segment(img, by, bx, by + length * np.cos(a), bx + length * np.sin(a), rng, charge=0.8)
        detail = {"start": [float(sy), float(sx)]}
    for y0, x0, y1, x1, _ in tracks:
        segment(img, y0, x0, y1, x1, rng)
    return readout(img, rng), detail


def generate(n: int, fraction: float, seed: int, size: int = SIZE) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` events (float32) and their truth table (frame, label, cls, detail)."""
    return render_set(n, fraction, CLASSES, seed, size, event)
