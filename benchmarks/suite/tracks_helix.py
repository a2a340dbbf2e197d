"""Detector set A: a pixel plane transverse to the beam in a solenoid field; charged tracks are helices.

Simulator: 2-7 tracks from a beam spot at the centre, each with charge +-1 and a transverse momentum that
sets its radius of curvature (``R = RADIUS_PER_GEV * pT``); stepped in ``STEP`` px, with Gaussian
multiple-scattering kicks (``MS_ANGLE / pT`` per sqrt(px)), 95% hit efficiency and a Landau-like
(log-normal) charge per hit. Every frame has electronic noise and a few random noise hits.

Anomaly classes:
- ``kink``: a track decays in flight to one charged daughter: direction changes by 15-60 degrees and the
  curvature changes, 30-60% along the track (pi -> mu nu).
- ``two_prong``: a neutral (invisible) flies 8-20 px from the vertex, then decays into two tracks of
  opposite charge (a V0).
- ``delta_ray``: a knock-on electron: a tight spiral (radius 2-5 px, 1-2 turns, high charge) starting on a
  track.
- ``shower``: an electromagnetic shower: 10-25 short segments (3-10 px) fanning out from a point on a
  track, with a dense core.
- ``pileup``: a second, out-of-time collision: as many tracks again from a vertex 6-15 px away, at
  half the charge.

A kink, delta ray or shower is placed along the part of its track inside the frame (3 px from the edges):
placed along the whole simulated track, as before, it fell outside the frame in about a third of the
frames (the vertex is at the centre and tracks run 64 px), which were then labelled anomalous with
nothing to see.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from .files import render_set

CLASSES = ["kink", "two_prong", "delta_ray", "shower", "pileup"]
SIZE = 64
STEP = 0.5
RADIUS_PER_GEV = 40.0     # px of radius per GeV of transverse momentum
MS_ANGLE = 0.02           # rad per sqrt(px) at 1 GeV
NOISE = 0.04              # electronic noise (units of a mean hit)
NOISE_HITS = 4.0          # mean random noise hits per frame
EFFICIENCY = 0.95


def _pt(rng: np.random.Generator) -> float:
    """Transverse momentum (GeV): 0.6 + exponential(1.0), so radii >= 24 px."""
    return 0.6 + rng.exponential(1.0)


def helix(y: float, x: float, phi: float, pt: float, charge: int, length: float,
          rng: np.random.Generator) -> np.ndarray:
    """Points (row, col) of a track from (y, x) with initial direction ``phi`` (rad, from +x towards +row)."""
    n = int(length / STEP)
    pts = np.empty((n, 2))
    dphi = charge * STEP / (RADIUS_PER_GEV * pt)
    kick = MS_ANGLE / pt * np.sqrt(STEP)
    for i in range(n):
        pts[i] = y, x
        phi += dphi + rng.normal(0, kick)
        y, x = y + STEP * np.sin(phi), x + STEP * np.cos(phi)
    return pts


def deposit(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> None:
    """Add a log-normal charge per visited pixel (hit efficiency ``EFFICIENCY``) for points inside."""
    size = img.shape[0]
    pix = np.unique(np.floor(pts).astype(int), axis=0)
    pix = pix[(pix >= 0).all(1) & (pix < size).all(1)]
    pix = pix[rng.random(len(pix)) < EFFICIENCY]
    img[pix[:, 0], pix[:, 1]] += scale * rng.lognormal(0, 0.35, len(pix))


def _inside(pts: np.ndarray, size: int, margin: float = 3.0) -> int:
    """How many leading points of a track lie inside the frame, ``margin`` px from its edges: an anomaly
    placed along a track is placed on this part, or it would fall outside the detector and be invisible."""
    out = ((pts < margin) | (pts > size - 1 - margin)).any(axis=1)
    return int(np.argmax(out)) if out.any() else len(pts)


def _direction(pts: np.ndarray, i: int) -> float:
    d = pts[min(i + 1, len(pts) - 1)] - pts[max(i - 1, 0)]
    return float(np.arctan2(d[0], d[1]))


def event(rng: np.random.Generator, cls: str, size: int = SIZE) -> tuple[np.ndarray, dict]:
    """One frame of class ``cls`` ('normal' or one of ``CLASSES``) and the anomaly's parameters."""
    img = np.zeros((size, size))
    vy, vx = size / 2 + rng.normal(0, 1.0, 2)
    tracks = []
    for _ in range(int(rng.integers(2, 8))):
        pts = helix(vy, vx, rng.uniform(0, 2 * np.pi), _pt(rng), int(rng.choice([-1, 1])), size, rng)
        tracks.append(pts)
    detail: dict = {}
    if cls == "kink":
        t = tracks[0]
        i = int(_inside(t, size) * rng.uniform(0.3, 0.6))
        turn = np.deg2rad(rng.uniform(15, 60)) * rng.choice([-1, 1])
        tail = helix(*t[i], _direction(t, i) + turn, _pt(rng), int(rng.choice([-1, 1])), size, rng)
        tracks[0] = np.vstack([t[:i], tail])
        detail = {"at": [float(v) for v in t[i]], "turn_deg": float(np.rad2deg(turn))}
    elif cls == "two_prong":
        phi, flight = rng.uniform(0, 2 * np.pi), rng.uniform(8, 20)
        dy, dx = vy + flight * np.sin(phi), vx + flight * np.cos(phi)
        half = np.deg2rad(rng.uniform(10, 30))
        for sign in (-1, 1):
            tracks.append(helix(dy, dx, phi + sign * half, _pt(rng), sign, size, rng))
        detail = {"vertex": [float(vy), float(vx)], "decay_vertex": [float(dy), float(dx)]}
    elif cls == "delta_ray":
        t = tracks[0]
        i = int(_inside(t, size) * rng.uniform(0.2, 0.6))
        r, turns = rng.uniform(2, 5), rng.uniform(1, 2)
        spiral = helix(*t[i], rng.uniform(0, 2 * np.pi), r / RADIUS_PER_GEV, int(rng.choice([-1, 1])),
                       2 * np.pi * r * turns, np.random.default_rng(rng.integers(1 << 31)))
        deposit(img, spiral, rng, scale=2.0)
        detail = {"at": [float(v) for v in t[i]], "radius": float(r)}
    elif cls == "shower":
        t = tracks[0]
        i = int(_inside(t, size) * rng.uniform(0.3, 0.7))
        y, x = t[i]
        phi = _direction(t, i)
        for _ in range(int(rng.integers(10, 26))):
            seg = helix(y + rng.normal(0, 1), x + rng.normal(0, 1), phi + rng.normal(0, 0.5), 0.3, 1,
                        rng.uniform(3, 10), rng)
            deposit(img, seg, rng, scale=1.5)
        tracks[0] = t[:i]
        detail = {"at": [float(y), float(x)]}
    elif cls == "pileup":
        phi, dist = rng.uniform(0, 2 * np.pi), rng.uniform(6, 15)
        py, px = vy + dist * np.sin(phi), vx + dist * np.cos(phi)
        for _ in range(len(tracks)):
            deposit(img, helix(py, px, rng.uniform(0, 2 * np.pi), _pt(rng), int(rng.choice([-1, 1])), size, rng),
                    rng, scale=0.5)
        detail = {"second_vertex": [float(py), float(px)]}
    for pts in tracks:
        deposit(img, pts, rng)
    n_noise = rng.poisson(NOISE_HITS)
    img[rng.integers(0, size, n_noise), rng.integers(0, size, n_noise)] += rng.exponential(0.5, n_noise)
    return img + rng.normal(0, NOISE, img.shape), detail


def generate(n: int, fraction: float, seed: int, size: int = SIZE) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` events (float32) and their truth table (frame, label, cls, detail)."""
    return render_set(n, fraction, CLASSES, seed, size, event)
