"""``cnnpipe denoise``: write the VAE's reconstructions of the frames of one input back out.

The VAE works on the preprocessed feature maps (intensity + Sobel, max-pooled ``pool_levels`` times), so
the reconstructions are at feature resolution (``tile_size / 2**pool_levels``), one per tile, not
re-assembled into the full frame: this is the honest output of the model, not an upsampled guess. FITS
inputs give a FITS file (one image HDU per tile, intensity channel, provenance in the header); HDF5 inputs
give an HDF5 file (all channels, provenance in the attributes).
"""
from __future__ import annotations

import datetime
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from . import __version__
from .atomic import atomic_path
from .checkpoint import load_vae
from .errors import UserError
from .readers import suffixes
from .readers.fits import SUFFIXES as FITS_SUFFIXES
from .shards import shard_number
from .tables import read_manifest


def read_frames(features: list[str], rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps (N, C, H, W) and valid maps (N, H, W) of manifest ``rows`` (columns shard, row), in order."""
    paths = {shard_number(p): p for p in features}
    missing = sorted(set(rows["shard"]) - set(paths))
    if missing:
        raise UserError(f"the frames asked for live in shard(s) {missing}, not among --features")
    x, v = [None] * len(rows), [None] * len(rows)
    pos = np.arange(len(rows))
    for shard, grp in rows.assign(_pos=pos).groupby("shard"):
        order = np.argsort(grp["row"].to_numpy())
        r = grp["row"].to_numpy()[order]
        with h5py.File(paths[shard], "r") as f:
            xs, vs = f["features"][r], f["valid"][r]
        for i, p in enumerate(grp["_pos"].to_numpy()[order]):
            x[p], v[p] = xs[i], vs[i]
    return np.nan_to_num(np.stack(x)), np.stack(v)


@torch.no_grad()
def reconstruct(model: torch.nn.Module, x: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    """VAE reconstructions (eval mode: z = mu) of feature maps ``x``, batched."""
    out = [model(torch.from_numpy(x[i:i + batch]).to(device))[0].float().cpu().numpy()
           for i in range(0, len(x), batch)]
    return np.concatenate(out)


def ok_rows(manifest: str | Path, source: str) -> pd.DataFrame:
    df = read_manifest(manifest)
    rows = df[(df["source"] == source) & (df["status"] == "ok")]
    if rows.empty:
        raise UserError(f"no ingested frames of {source!r} in {manifest} (give the source exactly as in its "
                        "'source' column)")
    return rows.sort_values(["key", "index"], key=lambda c: c if c.name != "key" else c.astype(str))


def denoise(model_path: str | Path, features: list[str], manifest: str | Path, source: str,
            out_dir: str | Path, device: torch.device) -> Path:
    """Write reconstructions of every tile of ``source``; return the file written."""
    model, _ = load_vae(model_path, device)
    rows = ok_rows(manifest, source)
    x, valid = read_frames(features, rows)
    recon = reconstruct(model, x, device)
    name = Path(source).name
    is_fits = name.lower().endswith(FITS_SUFFIXES)
    for suffix in sorted(suffixes(), key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    out = Path(out_dir) / f"{name}.denoised.{'fits' if is_fits else 'h5'}"
    prov = {"source": source, "model": str(model_path), "cnnpipe_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "resolution": f"feature maps {x.shape[-1]}x{x.shape[-2]} (tile / 2**pool_levels), one per tile"}
    (_write_fits if is_fits else _write_hdf5)(out, rows, recon, valid, prov)
    return out


def _write_fits(out: Path, rows: pd.DataFrame, recon: np.ndarray, valid: np.ndarray, prov: dict) -> None:
    from astropy.io import fits

    primary = fits.PrimaryHDU()
    h = primary.header
    h["CNPVER"] = (prov["cnnpipe_version"], "cnnpipe version")
    h["CNPDATE"] = (prov["created"], "UTC time written")
    h["CNPSRC"] = (prov["source"], "input file")
    h["CNPMODEL"] = (prov["model"], "VAE checkpoint")
    h["HISTORY"] = "cnnpipe denoise: VAE reconstructions (z = posterior mean) of the intensity channel"
    h["HISTORY"] = prov["resolution"]
    hdus = [primary]
    for i, r in enumerate(rows.itertuples()):
        img = np.where(valid[i] >= 0.5, recon[i, 0], np.nan).astype(np.float32)
        hdu = fits.ImageHDU(img, name=f"RECON{i}")
        hdu.header["CNPKEY"] = (str(r.key), "input HDU (manifest key)")
        hdu.header["CNPINDEX"] = (int(r.index), "tile index within that HDU")
        hdu.header["CNPFRAME"] = (int(r.frame), "frame number within that HDU")
        hdu.header["CNPY0"] = (int(r.y0), "tile origin row in the input frame")
        hdu.header["CNPX0"] = (int(r.x0), "tile origin column in the input frame")
        hdu.header["CNPSCALE"] = (float(getattr(r, "scale", 1.0)), "tile pixels per input frame pixel")
        hdus.append(hdu)
    with atomic_path(out) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def _write_hdf5(out: Path, rows: pd.DataFrame, recon: np.ndarray, valid: np.ndarray, prov: dict) -> None:
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("reconstruction", data=recon.astype(np.float32), compression="gzip")
        f.create_dataset("valid", data=valid.astype(np.float32), compression="gzip")
        f.create_dataset("key", data=rows["key"].astype(str).to_numpy().astype(object), dtype=h5py.string_dtype())
        for col in ("index", "frame", "y0", "x0"):
            f.create_dataset(col, data=rows[col].to_numpy(np.int64))
        f.create_dataset("scale", data=rows["scale"].to_numpy(np.float64) if "scale" in rows else np.ones(len(rows)))
        for k, v in prov.items():
            f.attrs[k] = v
        f.attrs["channels"] = ["intensity", "sobel", "direction"][: recon.shape[1]]
        f.attrs["note"] = "cnnpipe denoise: VAE reconstructions (z = posterior mean); masked pixels: valid < 0.5"
