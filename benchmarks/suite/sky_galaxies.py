"""Sky set C (dev only): fields of extended galaxies, Sersic profiles as astropy models them.

Why: in the M13 sets the light is stars and a cluster's glow; nothing there is a galaxy filling much of a
frame, so nothing on the dev side showed what a bright extended object does to a score (NGC 1316, the
held-out sky set, is such a field). Each frame holds one large galaxy (``astropy.modeling.models.Sersic2D``:
Sersic index 0.8-4, effective radius 6-20 px, ellipticity up to 0.6, centred anywhere up to 10 px outside
the frame), 0-2 small ones and a few stars; in electrons on a sky of ``SKY_E``, Poisson photon noise,
Gaussian read noise, bias. Galaxies and stars are seen through the same Gaussian PSF (``PSF_SIGMA`` px):
a Sersic profile evaluated at pixel centres alone has a core as sharp as a cosmic-ray hit, which a
telescope never shows.

Anomaly classes (electrons, before read-out unless said otherwise):
- ``satellite_trail``: a straight line, 3-20 sky sigma at its peak, through a point within one effective
  radius of the large galaxy's centre (kept inside the frame): a trail across the galaxy's body.
- ``cosmic_rays``: 1-4 sharp hits, added after the optics (:func:`sky_m13._cosmic_rays`).
- ``hot_column``: one column with 5-30 sky sigma of extra charge over its whole length, after the optics.
- ``saturation_bleed``: a star past full well bleeding along its column (:func:`sky_m13._bleed`).
- ``ghost_ring``: a faint out-of-focus annulus, 1-3 sky sigma (:func:`sky_m13._ghost`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.modeling.models import Sersic2D
from scipy.ndimage import gaussian_filter

from .files import render_set
from .sky_m13 import FULL_WELL_E, _bleed, _cosmic_rays, _ghost, trail

CLASSES = ["satellite_trail", "cosmic_rays", "hot_column", "saturation_bleed", "ghost_ring"]
SIZE = 64
SKY_E = 150.0
READ_NOISE_E = 4.0
GAIN = 1.0
BIAS_ADU = 300.0
PSF_SIGMA = 1.5


def sky_sigma() -> float:
    return float(np.sqrt(SKY_E + READ_NOISE_E ** 2))


def _galaxy(rng: np.random.Generator, size: int, r_eff: tuple[float, float], amplitude: tuple[float, float],
            outside: float) -> tuple[np.ndarray, dict]:
    """A Sersic galaxy in electrons, seen through the PSF; ``amplitude`` is its surface brightness at the
    effective radius in sky sigma (before the PSF)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    p = {"x_0": rng.uniform(-outside, size + outside), "y_0": rng.uniform(-outside, size + outside),
         "r_eff": rng.uniform(*r_eff), "n": rng.uniform(0.8, 4.0), "ellip": rng.uniform(0, 0.6),
         "theta": rng.uniform(0, np.pi), "amplitude": rng.uniform(*amplitude) * sky_sigma()}
    return gaussian_filter(Sersic2D(**p)(xx, yy), PSF_SIGMA, mode="nearest"), {k: float(v) for k, v in p.items()}


def _stars(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    out = np.zeros((size, size))
    for _ in range(int(rng.poisson(6))):
        y, x = rng.uniform(0, size, 2)
        flux = 10 ** rng.uniform(2.5, 5.0)
        out += flux / (2 * np.pi * PSF_SIGMA ** 2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * PSF_SIGMA ** 2))
    return out


def event(rng: np.random.Generator, cls: str, size: int = SIZE) -> tuple[np.ndarray, dict]:
    """One frame in ADU and its anomaly's detail."""
    sig = sky_sigma()
    big, shape = _galaxy(rng, size, (6.0, 20.0), (1.0, 10.0), 10.0)
    electrons = SKY_E + big + _stars(rng, size)
    for _ in range(int(rng.integers(0, 3))):
        electrons = electrons + _galaxy(rng, size, (1.5, 5.0), (1.0, 20.0), 0.0)[0]
    after, detail = np.zeros((size, size)), {}
    if cls == "satellite_trail":
        point = np.clip([shape["y_0"], shape["x_0"]] + rng.uniform(-1, 1, 2) * shape["r_eff"], 4, size - 4)
        angle, peak = rng.uniform(0, 180), rng.uniform(3, 20) * sig
        electrons = electrons + trail(size, angle, tuple(point), rng.uniform(0.8, 1.5), peak)
        detail = {"angle": float(angle), "point": [float(p) for p in point], "peak_sigma": float(peak / sig)}
    elif cls == "saturation_bleed":
        star, detail = _bleed(size, rng)
        electrons = electrons + star
    elif cls == "ghost_ring":
        ring, detail = _ghost(size, rng, sig)
        electrons = electrons + ring
    elif cls == "cosmic_rays":
        after, detail = _cosmic_rays(size, rng, sig)
    elif cls == "hot_column":
        col, excess = int(rng.integers(0, size)), rng.uniform(5, 30) * sig
        after[:, col] = excess
        detail = {"col": col, "sigma": float(excess / sig)}
    charge = np.minimum(rng.poisson(np.minimum(electrons, 10 * FULL_WELL_E)).astype(np.float64) + after, FULL_WELL_E)
    detail["galaxy"] = shape
    return BIAS_ADU + (charge + rng.normal(0, READ_NOISE_E, (size, size))) / GAIN, detail


def generate(n: int, fraction: float, seed: int, size: int = SIZE) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` frames (ADU, float32) and their truth table (frame, label, cls, detail)."""
    return render_set(n, fraction, CLASSES, seed, size, event)
