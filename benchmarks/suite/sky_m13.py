"""Sky set A: cutouts of the globular cluster M13 (astropy's test image ``m13.fits``) as a CCD sees them.

Noise model: the image (minus its median, clipped at 0) is the source flux in electrons (times a per-frame
transparency), on a sky of ``SKY_E`` electrons; Poisson photon noise, then Gaussian read noise, then
gain and bias to ADU. Each frame is a random 64x64 window in one of the 8 orientations.

Anomaly classes (rendered in electrons, before read-out, unless said otherwise):
- ``satellite_trail``: a straight line across the frame at a random angle, Gaussian cross-section,
  3-30 sky sigma at its peak; ``detail`` gives the angle (degrees, counter-clockwise from +x, with
  rows growing downwards as in the array) and a point on the line.
- ``cosmic_rays``: 1-4 sharp hits of 1-4 pixels, 20-200 sky sigma, added after the optics (no PSF).
- ``dead_column``: one column reads bias only (no charge): ``SKY_E`` electrons below the sky.
- ``saturation_bleed``: a star past full well; the excess charge bleeds up and down its column.
- ``ghost_ring``: an out-of-focus reflection of a bright star: a faint annulus, 1-3 sky sigma.
- ``flat_field``: a twilight flat from the same camera in the science folder: no stars, a smooth
  vignetted illumination far above the sky level.
"""
from __future__ import annotations

from pathlib import Path

import astropy
import json
import numpy as np
import pandas as pd
from astropy.io import fits

from .files import dihedral, plan_anomalies

SOURCE = Path(astropy.__file__).parent / "io" / "fits" / "hdu" / "compressed" / "tests" / "data" / "m13.fits"
CLASSES = ["satellite_trail", "cosmic_rays", "dead_column", "saturation_bleed", "ghost_ring", "flat_field"]
SIZE = 64
SKY_E = 200.0        # sky level, electrons per pixel
FLUX_SCALE = 3.0     # electrons per count of the source image
GAIN = 2.0           # electrons per ADU
READ_NOISE_E = 5.0
BIAS_ADU = 1000.0
FULL_WELL_E = 40000.0


def source_flux() -> np.ndarray:
    """The M13 image minus its median, clipped at 0: source counts per pixel."""
    img = fits.getdata(SOURCE).astype(np.float64)
    return np.clip(img - np.median(img), 0, None)


def sky_sigma() -> float:
    """Noise of an empty sky pixel in electrons (photon + read noise)."""
    return float(np.sqrt(SKY_E + READ_NOISE_E ** 2))


def trail(size: int, angle_deg: float, point: tuple[float, float], width: float, peak: float) -> np.ndarray:
    """A straight line through ``point`` (row, col) at ``angle_deg``, Gaussian profile of sigma ``width``."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    t = np.deg2rad(angle_deg)
    # direction (dx, dy) = (cos t, -sin t): counter-clockwise from +x with rows growing downwards
    dist = (xx - point[1]) * np.sin(t) + (yy - point[0]) * np.cos(t)
    return peak * np.exp(-0.5 * (dist / width) ** 2)


def _cosmic_rays(size: int, rng: np.random.Generator, sig: float) -> tuple[np.ndarray, dict]:
    out = np.zeros((size, size))
    hits = []
    for _ in range(int(rng.integers(1, 5))):
        y, x = rng.integers(2, size - 2, 2)
        dy, dx = [(0, 0), (0, 1), (1, 0), (1, 1), (1, -1)][rng.integers(5)]
        amp = rng.uniform(20, 200) * sig
        for s in range(int(rng.integers(1, 5))):
            out[min(y + s * dy, size - 1), min(max(x + s * dx, 0), size - 1)] += amp * rng.uniform(0.6, 1.0)
        hits.append([int(y), int(x)])
    return out, {"hits": hits}


def _bleed(size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A star whose peak is 3-10x the full well; its excess charge spreads along the column."""
    y, x = rng.integers(12, size - 12, 2)
    yy, xx = np.mgrid[:size, :size]
    star = rng.uniform(3, 10) * FULL_WELL_E * np.exp(-0.5 * ((yy - y) ** 2 + (xx - x) ** 2) / 1.6 ** 2)
    excess = np.clip(star - FULL_WELL_E, 0, None).sum(axis=0)       # per column
    star = np.minimum(star, FULL_WELL_E)
    for col in np.flatnonzero(excess):
        n = int(np.ceil(excess[col] / FULL_WELL_E / 2))               # pixels bled above and below
        star[max(0, y - n):min(size, y + n + 1), col] = FULL_WELL_E
    return star, {"row": int(y), "col": int(x)}


def _ghost(size: int, rng: np.random.Generator, sig: float) -> tuple[np.ndarray, dict]:
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0, size, 2)
    r0, w = rng.uniform(8, 20), rng.uniform(2, 4)
    r = np.hypot(yy - cy, xx - cx)
    ring = rng.uniform(1, 3) * sig * np.exp(-0.5 * ((r - r0) / w) ** 2)
    return ring, {"centre": [float(cy), float(cx)], "radius": float(r0)}


def _flat(size: int, rng: np.random.Generator) -> np.ndarray:
    """Twilight-flat illumination: a high smooth level falling off towards one corner (vignetting)."""
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = rng.uniform(-0.5, 1.5, 2)
    level = rng.uniform(5000, 20000)
    return level * (1 - rng.uniform(0.1, 0.2) * ((yy - cy) ** 2 + (xx - cx) ** 2))


def generate(n: int, fraction: float, seed: int, size: int = SIZE) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` frames (ADU, float32) and their truth table (frame, label, cls, detail)."""
    rng = np.random.default_rng(seed)
    flux = source_flux()
    sig = sky_sigma()
    classes = plan_anomalies(n, fraction, CLASSES, rng)
    frames, details = np.empty((n, size, size), np.float32), []
    for i, cls in enumerate(classes):
        y0, x0 = rng.integers(0, flux.shape[0] - size + 1), rng.integers(0, flux.shape[1] - size + 1)
        electrons = SKY_E + FLUX_SCALE * rng.uniform(0.8, 1.2) * dihedral(flux[y0:y0 + size, x0:x0 + size], rng)
        detail: dict = {}
        after = np.zeros((size, size))       # charge added after the photons (no photon noise of its own)
        if cls == "satellite_trail":
            angle, point = rng.uniform(0, 180), tuple(rng.uniform(size * 0.3, size * 0.7, 2))
            peak = rng.uniform(3, 30) * sig
            electrons = electrons + trail(size, angle, point, rng.uniform(0.8, 1.5), peak)
            detail = {"angle": float(angle), "point": [float(p) for p in point], "peak_sigma": float(peak / sig)}
        elif cls == "saturation_bleed":
            star, detail = _bleed(size, rng)
            electrons = electrons + star
        elif cls == "ghost_ring":
            ring, detail = _ghost(size, rng, sig)
            electrons = electrons + ring
        elif cls == "flat_field":
            electrons = _flat(size, rng)
        elif cls == "cosmic_rays":
            after, detail = _cosmic_rays(size, rng, sig)
        charge = np.minimum(rng.poisson(electrons).astype(np.float64) + after, FULL_WELL_E)
        if cls == "dead_column":
            col = int(rng.integers(0, size))
            charge[:, col] = 0.0
            detail = {"col": col}
        adu = BIAS_ADU + (charge + rng.normal(0, READ_NOISE_E, (size, size))) / GAIN
        frames[i] = adu.astype(np.float32)
        details.append(json.dumps(detail))
    truth = pd.DataFrame({"frame": np.arange(n), "label": [int(c != "normal") for c in classes], "cls": classes,
                          "detail": details})
    return frames, truth
