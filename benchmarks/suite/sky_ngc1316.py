"""Sky set B: cutouts of NGC 1316 (astropy's tile-compressed test image ``comp.fits``), reduced frames.

Noise model, unlike set A: sky-subtracted float frames; the image minus its median (keeping its own noise)
plus Gaussian noise of ``NOISE`` and a sky gradient (a tilted plane of 0-3 sigma across the frame on a
random pedestal). Each frame is a random 48x48 window in one of the 8 orientations.

Anomaly classes (their own renderings, sharing nothing with set A or the demo):
- ``satellite_trail``: an anti-aliased line (``skimage.draw.line_aa``) from edge to edge, 1-2 px wide,
  its brightness glinting along the track (a tumbling satellite), 2-10 sigma; ``detail`` gives the ends.
- ``cosmic_rays``: 1-3 "worms": random-walk tracks 3-10 px long at 10-100 sigma (grazing incidence).
- ``hot_column``: a column raised by 3-10 sigma from a random row to the read-out edge (row 0).
- ``diffraction_spikes``: a bright star with four spider-vane spikes 10-20 px long.
- ``fringing``: a faint interference pattern (two crossed sine waves, 6-12 px period), 0.5-1.5 sigma.
- ``other_instrument``: a raw frame from another camera in the same folder: a 48x48 window of the Apogee
  Alta image ``sip-wcs.fits`` (astropy's test data), in its own ADU.
"""
from __future__ import annotations

import json
from pathlib import Path

import astropy
import numpy as np
import pandas as pd
from astropy.io import fits
from skimage.draw import line_aa

from .files import dihedral, plan_anomalies

DATA = Path(astropy.__file__).parent
SOURCE = DATA / "io" / "fits" / "tests" / "data" / "comp.fits"
OTHER = DATA / "nddata" / "tests" / "data" / "sip-wcs.fits"
CLASSES = ["satellite_trail", "cosmic_rays", "hot_column", "diffraction_spikes", "fringing", "other_instrument"]
SIZE = 48
NOISE = 20.0          # added Gaussian noise (the image keeps its own ~22)


def source_image() -> np.ndarray:
    img = fits.getdata(SOURCE, ext=1).astype(np.float64)
    return img - np.median(img)


def frame_sigma() -> float:
    """Noise of an empty pixel: the image's own (robust) noise and the added noise in quadrature."""
    img = source_image()
    own = 1.4826 * np.median(np.abs(img - np.median(img)))
    return float(np.hypot(own, NOISE))


def edge_points(size: int, rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two points on different sides of the frame (row, col)."""
    sides = rng.choice(4, 2, replace=False)

    def on(side: int) -> tuple[int, int]:
        t = int(rng.integers(0, size))
        return [(0, t), (size - 1, t), (t, 0), (t, size - 1)][side]
    return on(sides[0]), on(sides[1])


def _trail(size: int, rng: np.random.Generator, sig: float) -> tuple[np.ndarray, dict]:
    (r0, c0), (r1, c1) = edge_points(size, rng)
    out = np.zeros((size, size))
    amp = rng.uniform(2, 10) * sig
    period, phase = rng.uniform(8, 30), rng.uniform(0, 2 * np.pi)
    width = int(rng.integers(1, 3))
    for off in range(width):
        rr, cc, val = line_aa(r0, c0 + off if c0 + off < size else c0, r1, c1 + off if c1 + off < size else c1)
        along = np.hypot(rr - r0, cc - c0)
        glint = 0.6 + 0.4 * np.cos(2 * np.pi * along / period + phase)
        np.maximum.at(out, (rr, cc), amp * val * glint)
    return out, {"ends": [[int(r0), int(c0)], [int(r1), int(c1)]], "peak_sigma": float(amp / sig)}


def _worms(size: int, rng: np.random.Generator, sig: float) -> tuple[np.ndarray, dict]:
    out = np.zeros((size, size))
    starts = []
    for _ in range(int(rng.integers(1, 4))):
        y, x = rng.uniform(3, size - 3, 2)
        heading = rng.uniform(0, 2 * np.pi)
        starts.append([int(y), int(x)])
        for _ in range(int(rng.integers(3, 11))):
            out[int(np.clip(y, 0, size - 1)), int(np.clip(x, 0, size - 1))] += rng.uniform(10, 100) * sig
            heading += rng.normal(0, 0.4)
            y, x = y + np.sin(heading), x + np.cos(heading)
    return out, {"starts": starts}


def _hot_column(size: int, rng: np.random.Generator, sig: float) -> tuple[np.ndarray, dict]:
    col, row = int(rng.integers(0, size)), int(rng.integers(size // 3, size))
    out = np.zeros((size, size))
    out[:row, col] = rng.uniform(3, 10) * sig
    return out, {"col": col, "to_row": row}


def _spikes(size: int, rng: np.random.Generator, sig: float) -> tuple[np.ndarray, dict]:
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    peak = rng.uniform(200, 1000) * sig
    r = np.hypot(yy - cy, xx - cx)
    out = peak * np.exp(-0.5 * (r / 1.5) ** 2)
    rot, length = rng.uniform(0, np.pi / 2), rng.uniform(10, 20)
    for k in range(4):
        t = rot + k * np.pi / 2
        along = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        across = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        out += np.where(along > 0, 0.05 * peak * np.exp(-along / length) * np.exp(-0.5 * (across / 0.7) ** 2), 0)
    return out, {"centre": [float(cy), float(cx)], "rotation_deg": float(np.rad2deg(rot))}


def _fringes(size: int, rng: np.random.Generator, sig: float) -> tuple[np.ndarray, dict]:
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    out = np.zeros((size, size))
    periods = rng.uniform(6, 12, 2)
    for p in periods:
        t = rng.uniform(0, np.pi)
        out += np.sin(2 * np.pi * (xx * np.cos(t) + yy * np.sin(t)) / p + rng.uniform(0, 2 * np.pi))
    return rng.uniform(0.5, 1.5) * sig * out / 2, {"periods": [float(p) for p in periods]}


def _other(size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    img = fits.getdata(OTHER).astype(np.float64)
    y0, x0 = int(rng.integers(0, img.shape[0] - size + 1)), int(rng.integers(0, img.shape[1] - size + 1))
    return dihedral(img[y0:y0 + size, x0:x0 + size], rng), {"window": [y0, x0]}


def generate(n: int, fraction: float, seed: int, size: int = SIZE) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` frames (float32) and their truth table (frame, label, cls, detail)."""
    rng = np.random.default_rng(seed)
    img, sig = source_image(), frame_sigma()
    classes = plan_anomalies(n, fraction, CLASSES, rng)
    yy, xx = np.mgrid[:size, :size] / size
    frames, details = np.empty((n, size, size), np.float32), []
    for i, cls in enumerate(classes):
        y0, x0 = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        t = rng.uniform(0, 2 * np.pi)
        sky = rng.uniform(-20, 50) + rng.uniform(0, 3) * sig * (np.cos(t) * xx + np.sin(t) * yy)
        frame = dihedral(img[y0:y0 + size, x0:x0 + size], rng) + sky + rng.normal(0, NOISE, (size, size))
        detail: dict = {}
        if cls == "satellite_trail":
            add, detail = _trail(size, rng, sig)
        elif cls == "cosmic_rays":
            add, detail = _worms(size, rng, sig)
        elif cls == "hot_column":
            add, detail = _hot_column(size, rng, sig)
        elif cls == "diffraction_spikes":
            add, detail = _spikes(size, rng, sig)
        elif cls == "fringing":
            add, detail = _fringes(size, rng, sig)
        else:
            add = 0.0
        frame = frame + add
        if cls == "other_instrument":
            frame, detail = _other(size, rng)
        frames[i] = frame.astype(np.float32)
        details.append(json.dumps(detail))
    truth = pd.DataFrame({"frame": np.arange(n), "label": [int(c != "normal") for c in classes], "cls": classes,
                          "detail": details})
    return frames, truth
