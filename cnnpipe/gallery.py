"""The report's gallery arrays: for the top-K tiles, the input, Sobel map, VAE reconstruction, residual,
corner response and edge misfit, read from the frames and features shards the rank rule declares."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from .atomic import atomic_path
from .config import Normalise
from .corners import Reference, frame_columns, with_scale
from .errors import UserError
from .orientation import linear
from .population import population
from .shards import shard_number


def _by_shard(paths: list[str | Path], what: str) -> dict[int, str | Path]:
    found = {shard_number(p): p for p in paths}
    if len(found) != len(paths):
        raise UserError(f"{what}: two files of the same shard among {', '.join(map(str, paths))}")
    return found


def _rows(paths: dict[int, str | Path], top: pd.DataFrame, names: list[str], what: str) -> dict[str, np.ndarray]:
    """The datasets ``names`` at (shard, row) of every tile of ``top``, stacked in ``top``'s order."""
    out: dict[str, list] = {n: [] for n in names}
    for shard, row in zip(top.shard, top.row):
        if shard not in paths:
            raise UserError(f"tile of shard {shard} ranked, but no {what} shard {shard} was given")
        with h5py.File(paths[shard]) as f:
            for n in names:
                out[n].append(f[n][row])
    return {n: np.stack(v) for n, v in out.items()}


@torch.no_grad()
def gallery(ranked: pd.DataFrame, frames: list[str | Path], features: list[str | Path], vae,
            reference: str | Path, device: torch.device, top_k: int, out: str | Path,
            stretch: Normalise | None = None) -> None:
    """Arrays for the report's top-K: input tile, Sobel map, VAE reconstruction, residual, and the corner
    response and the edge misfit over their population's usual values (where a kink, an odd vertex or a
    track from elsewhere is); ``stretch``: the ingest normalisation, undone for the misfit."""
    top = ranked.head(top_k)
    wanted = [c for c in frame_columns(frames[0]) if c != "intensity_offset"]   # (a shard before it lacks it)
    tiles = with_scale(_rows(_by_shard(frames, "frames"), top, wanted, "frames"))
    inputs, scale = tiles["frames"], tiles["intensity_scale"]
    feats = _rows(_by_shard(features, "features"), top, ["features", "valid"], "features")
    x = torch.from_numpy(feats["features"]).to(device)
    recon = vae(x)[0][:, 0].float().cpu().numpy()
    intensity = x[:, 0].cpu().numpy()
    masked = feats["valid"] < 0.5
    ref = Reference(reference, device)
    codes = ref.codes(population(top))
    corner = ref.ratio(torch.from_numpy(inputs).to(device), codes)
    lin = linear(torch.from_numpy(inputs).to(device), torch.from_numpy(scale).to(device), stretch)
    misfit = ref.misfit_ratio(lin, codes)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f["input"] = inputs
        f["corner"] = corner.cpu().numpy()
        f["orientation"] = misfit.cpu().numpy()
        f["sobel"] = x[:, 1].cpu().numpy()
        f["recon"] = recon
        f["residual"] = np.where(masked, np.nan, intensity - recon)
        strings = h5py.string_dtype()
        f.create_dataset("source", data=top.source.tolist(), dtype=strings)
        f.create_dataset("key", data=top.key.astype(str).tolist(), dtype=strings)
        f["index"] = top["index"].to_numpy()
        f["rank"] = top["rank"].to_numpy()
