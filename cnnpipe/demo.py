"""The embedded demo data set: real sky frames with injected artefacts and simulated detector tracks.

Everything comes from packages already installed (the Hubble deep field inside scikit-image), generated
deterministically from a seed. Ground truth goes to ``truth.csv`` beside the data, never inside it.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from astropy.io import fits

from .atomic import atomic_path

SKY_ANOMALIES = ("satellite_trail", "cosmic_rays", "dead_column", "nan_patch")
TRACK_ANOMALIES = ("kink", "displaced_vertex", "straight_cosmic")


# ---- sky -------------------------------------------------------------------------------------------
def hubble_gray() -> np.ndarray:
    """The Hubble deep field (scikit-image's bundled copy) as float32 luminance in [0, 1]."""
    from skimage.color import rgb2gray
    from skimage.data import hubble_deep_field

    return rgb2gray(hubble_deep_field()).astype(np.float32)


def sky_cutout(field: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` square from ``field`` in counts: sky 1000, sources up to ~5000 more, Poisson + read noise."""
    y = rng.integers(0, field.shape[0] - size)
    x = rng.integers(0, field.shape[1] - size)
    cut = np.rot90(field[y:y + size, x:x + size], rng.integers(4))
    signal = 1000.0 + 5000.0 * cut
    return (rng.poisson(signal) + rng.normal(0, 5, cut.shape)).astype(np.float32)


def add_trail(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A satellite trail: a straight bright line (Gaussian profile, sigma 0.8 px) across the frame."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    dist = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
    return img + 3000.0 * np.exp(-0.5 * (dist / 0.8) ** 2)


def add_cosmic_rays(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cosmic-ray hits: several single pixels and short 2-4 px streaks far brighter than any star."""
    out = img.copy()
    h, w = img.shape
    for _ in range(rng.integers(6, 10)):
        y, x = rng.integers(1, h - 4), rng.integers(1, w - 4)
        length = rng.integers(1, 4)
        dy, dx = [(0, 1), (1, 0), (1, 1)][rng.integers(3)]
        for t in range(length):
            out[y + t * dy, x + t * dx] += rng.uniform(20000, 40000)
    return out


def add_dead_column(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dead detector column (and its neighbour): pixels read zero."""
    out = img.copy()
    x = rng.integers(8, img.shape[1] - 9)
    out[:, x:x + 2] = 0.0
    return out


def add_nan_patch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A patch of missing data (NaN), as left by a masked readout region."""
    out = img.copy()
    s = img.shape[0] // 4
    y, x = rng.integers(0, img.shape[0] - s), rng.integers(0, img.shape[1] - s)
    out[y:y + s, x:x + s] = np.nan
    return out


INJECT = {"satellite_trail": add_trail, "cosmic_rays": add_cosmic_rays, "dead_column": add_dead_column,
          "nan_patch": add_nan_patch}


def _write_fits(path: Path, hdus: list) -> None:
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def _int16_hdu(img: np.ndarray, primary: bool = True):
    """Store counts as int16 with BSCALE/BZERO (and BLANK for NaN), as many instruments write them."""
    bscale, bzero = 2.0, 32768.0
    raw = np.round((np.nan_to_num(img, nan=0.0) - bzero) / bscale)
    raw = np.clip(raw, -32767, 32767).astype(np.int16)
    raw[np.isnan(img)] = -32768
    hdu = (fits.PrimaryHDU if primary else fits.ImageHDU)(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = bscale, bzero, -32768
    return hdu


HDF_N = (189.2058, 62.2161)   # the Hubble Deep Field North, ICRS degrees
PIXEL_DEG = 0.1 / 3600        # WFPC2 wide-field pixels: 0.1 arcsec


def _header(hdu, i: int):
    """Header cards of demo field ``i``: what it is, and a TAN WCS pointing it at its own place in a grid of
    fields 36 arcsec apart around the HDF-N (north up, east left), so tiles get sky coordinates."""
    hdu.header["OBJECT"] = f"HDF field {i:03d}"
    hdu.header["TELESCOP"] = "HST (demo)"
    hdu.header["INSTRUME"] = "WFPC2 (demo)"
    h, w = hdu.shape[-2:]
    dec = HDF_N[1] + (i // 8 - 4) * 0.01
    ra = HDF_N[0] + (i % 8 - 4) * 0.01 / np.cos(np.radians(dec))
    hdu.header.update(WCSAXES=2, CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CUNIT1="deg", CUNIT2="deg",
                      CRPIX1=(w + 1) / 2, CRPIX2=(h + 1) / 2, CRVAL1=round(ra, 6), CRVAL2=round(dec, 6),
                      CD1_1=-PIXEL_DEG, CD1_2=0.0, CD2_1=0.0, CD2_2=PIXEL_DEG, RADESYS="ICRS")
    return hdu


def make_sky(out: Path, n: int, size: int, anomaly_fraction: float, rng: np.random.Generator) -> list[dict]:
    """Write ``n`` sky frames as a mix of FITS layouts; return ground-truth rows for the injected ones."""
    field = hubble_gray()
    n_bad = max(len(SKY_ANOMALIES), round(n * anomaly_fraction))
    bad_at = dict(zip(rng.choice(n, n_bad, replace=False).tolist(),
                      [SKY_ANOMALIES[i % len(SKY_ANOMALIES)] for i in range(n_bad)]))
    frames = []
    for i in range(n):
        img = sky_cutout(field, size, rng)
        if i in bad_at:
            img = INJECT[bad_at[i]](img, rng)
        frames.append(img)
    # layouts: 10% tile-compressed (one file, one HDU each), 15% in 4-extension files, 20% int16, 5% a cube, rest single
    n_comp, n_mef, n_int, n_cube = int(0.10 * n), int(0.15 * n) // 4 * 4, int(0.20 * n), max(2, int(0.05 * n))
    where: list[tuple[str, str, int]] = []
    i = 0
    _write_fits(out / "compressed.fits.fz", [fits.PrimaryHDU()] + [
        _header(fits.CompImageHDU(frames[i + j], compression_type="RICE_1", quantize_level=16), i + j)
        for j in range(n_comp)])
    where += [("compressed.fits.fz", str(j + 1), 0) for j in range(n_comp)]
    i += n_comp
    for m in range(n_mef // 4):
        _write_fits(out / f"mef-{m:03d}.fits", [fits.PrimaryHDU()] + [
            _header(fits.ImageHDU(frames[i + j]), i + j) for j in range(4)])
        where += [(f"mef-{m:03d}.fits", str(j + 1), 0) for j in range(4)]
        i += 4
    for j in range(n_int):
        _write_fits(out / f"int16-{j:03d}.fits", [_header(_int16_hdu(frames[i]), i)])
        where.append((f"int16-{j:03d}.fits", "0", 0))
        i += 1
    _write_fits(out / "cube.fits.gz", [_header(fits.PrimaryHDU(np.stack(frames[i:i + n_cube])), i)])
    where += [("cube.fits.gz", "0", j) for j in range(n_cube)]
    i += n_cube
    for j in range(i, n):
        _write_fits(out / f"single-{j:03d}.fits", [_header(fits.PrimaryHDU(frames[j]), j)])
        where.append((f"single-{j:03d}.fits", "0", 0))
    # one frame twice the model size, to exercise tiling
    _write_fits(out / "wide.fits", [_header(fits.PrimaryHDU(sky_cutout(field, 2 * size, rng)), n)])
    return [dict(source=str(out / where[k][0]), key=where[k][1], frame=where[k][2], anomaly=kind)
            for k, kind in sorted(bad_at.items())]


# ---- tracks ----------------------------------------------------------------------------------------
def _draw(img: np.ndarray, ys: np.ndarray, xs: np.ndarray, amp: float = 1.0) -> None:
    """Deposit charge along a polyline (bilinear splat of densely sampled points)."""
    h, w = img.shape
    for y, x in zip(ys, xs):
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - y0, x - x0
        for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            if 0 <= y0 + dy < h and 0 <= x0 + dx < w:
                img[y0 + dy, x0 + dx] += amp * wgt


def helix(vy: float, vx: float, angle: float, curvature: float, length: float, step: float = 0.25):
    """Points of a track curving in a magnetic field: a circular arc from the vertex."""
    s = np.arange(0, length, step)
    phi = angle + curvature * s
    return vy + np.cumsum(np.sin(phi)) * step, vx + np.cumsum(np.cos(phi)) * step


def track_event(size: int, rng: np.random.Generator, anomaly: str | None = None) -> np.ndarray:
    """One detector image: 3-6 curved tracks from a vertex near the centre, plus noise; optionally odd."""
    img = np.zeros((size, size), dtype=np.float32)
    c = size / 2
    vy, vx = c + rng.normal(0, 1.0), c + rng.normal(0, 1.0)
    if anomaly == "displaced_vertex":
        r, a = rng.uniform(0.28, 0.36) * size, rng.uniform(0, 2 * np.pi)
        vy, vx = c + r * np.sin(a), c + r * np.cos(a)
    n_tracks = rng.integers(3, 7)
    for t in range(n_tracks):
        angle = rng.uniform(0, 2 * np.pi)
        curv = rng.choice([-1, 1]) * rng.uniform(0.01, 0.05)
        length = rng.uniform(0.25, 0.45) * size
        ys, xs = helix(vy, vx, angle, curv, length)
        if anomaly == "kink" and t == 0:  # a decay in flight: the track goes on at a sharp angle to its
            heading = angle + curv * length     # direction at the decay point (the arc has turned by then)
            ys2, xs2 = helix(ys[-1], xs[-1], heading + rng.choice([-1, 1]) * rng.uniform(1.2, 1.8), curv, length)
            ys, xs = np.concatenate([ys, ys2]), np.concatenate([xs, xs2])
        _draw(img, ys, xs, amp=rng.uniform(0.8, 1.2))
    if anomaly == "straight_cosmic":
        a = rng.uniform(0, np.pi)
        off = rng.uniform(0.25, 0.4) * size * rng.choice([-1, 1])
        s = np.arange(-size, size, 0.25)
        ys = c + off * np.cos(a) + s * np.sin(a)
        xs = c - off * np.sin(a) + s * np.cos(a)
        keep = (ys >= 0) & (ys < size - 1) & (xs >= 0) & (xs < size - 1)
        _draw(img, ys[keep], xs[keep], amp=1.5)
    img += rng.normal(0, 0.05, img.shape).astype(np.float32)
    return img


def make_tracks(path: Path, n: int, size: int, anomaly_fraction: float, rng: np.random.Generator) -> list[dict]:
    """Write an HDF5 file with dataset ``events`` (n, size, size); return ground-truth rows."""
    n_bad = max(len(TRACK_ANOMALIES), round(n * anomaly_fraction))
    bad_at = dict(zip(rng.choice(n, n_bad, replace=False).tolist(),
                      [TRACK_ANOMALIES[i % len(TRACK_ANOMALIES)] for i in range(n_bad)]))
    events = np.stack([track_event(size, rng, bad_at.get(i)) for i in range(n)])
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("events", data=events, chunks=(16, size, size), compression="gzip")
        ds.attrs["detector"] = "cnnpipe demo TPC (simulated)"
        ds.attrs["units"] = "MIP"
    return [dict(source=str(path), key="/events", frame=i, anomaly=kind) for i, kind in sorted(bad_at.items())]


def make_demo(out: str | Path, sky_frames: int, track_frames: int, anomaly_fraction: float, size: int,
              seed: int) -> pd.DataFrame:
    """Write ``out/sky/*.fits``, ``out/tracks.h5`` and ``out/truth.csv``; return the truth table."""
    out = Path(out)
    (out / "sky").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = make_sky(out / "sky", sky_frames, size, anomaly_fraction, rng)
    truth += make_tracks(out / "tracks.h5", track_frames, size, anomaly_fraction, rng)
    df = pd.DataFrame(truth, columns=["source", "key", "frame", "anomaly"])
    with atomic_path(out / "truth.csv") as tmp:
        df.to_csv(tmp, index=False)
    return df
