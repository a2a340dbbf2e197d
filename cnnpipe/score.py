"""Per-shard scoring: every active component of :mod:`cnnpipe.components` for each tile of one shard.

The components computed here (VAE reconstruction, KL, masked fraction, edges, the ingest pixel outliers,
corner, line, CNN) are the rows of the component table that are not gathered; the latent means ``z0..zD``
go along for the gathered components (:mod:`cnnpipe.rank`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import components
from .atomic import atomic_path
from .components.batch import ShardBatch
from .components.features import moments
from .components.vae import top_mean  # noqa: F401  (re-exported: part of the scoring API)
from .config import Normalise, Score, parse
from .corners import Reference, frame_batches, frame_columns
from .normalise import RAW_SCALE, unstretch
from .patches import owner_ids
from .pixel_outliers import STATS
from .population import population
from .prefetch import prefetch
from .shards import iter_batches

log = logging.getLogger(__name__)

ID = ["source", "key", "index"]
#: manifest columns carried through scoring and ranking (the gallery and the report look tiles up by them)
CARRIED = ["frame", "y0", "x0", "shard", "row", "population"]
#: the per-tile arrays gathered components read, and the prefix of their columns in a scores table
GATHERED_PREFIX = {"moments": "m", "cnn_features": "f", "layout": "t"}


@torch.no_grad()
def batch_components(b: ShardBatch, comps: list[components.Component], with_moments: bool = False,
                     with_cnn_features: bool = False, layout_side: int = 0,
                     stretch: Normalise | None = None) -> dict[str, np.ndarray]:
    """Values of ``comps`` for one batch (float64, one per tile), the latent means ``mu`` and, when asked,
    the whole-tile statistics ``moments``, the CNN's features ``cnn_features`` and (``layout_side`` > 0)
    each tile's intensity thumbnail ``layout``: the intensity on its linear scale (``stretch``, the ingest
    normalisation, undone; dev 6-vs-9 figures in README), averaged down to that side."""
    out = {c.name: c.compute()(b) for c in comps}
    out["mu"] = b.latent()[0].float()
    if with_moments:
        out["moments"] = moments(b.x)
    if with_cnn_features:
        out["cnn_features"] = b.cnn.features(b.x).float()
    if layout_side:
        i = b.x[:, :1].float()
        i = unstretch(i, stretch.method, stretch.asinh_softening) if stretch is not None else i
        out["layout"] = F.adaptive_avg_pool2d(i, layout_side).flatten(1)
    return {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in out.items()}


def model_components(vae, cnn, cnn_meta: dict, x: torch.Tensor, valid: torch.Tensor,
                     settings: Score | None = None) -> dict[str, np.ndarray]:
    """The model components (recon, recon_sobel, kl, masked, sobel_peak, cnn) and the latent means ``mu`` of
    a feature batch (N, C, H, W) whose unmasked fraction is ``valid``."""
    b = ShardBatch(x, valid, {}, vae=vae, cnn=cnn, cnn_meta=cnn_meta, settings=settings or parse({}).score)
    want = [c for c in components.per_shard() if c.name in ("recon", "recon_sobel", "kl", "masked", "sobel_peak",
                                                             "cnn")]
    return batch_components(b, want)


def score_shard(features_path: str | Path, frames_path: str | Path, manifest: pd.DataFrame, shard: int, vae, cnn,
                cnn_meta: dict, reference: str | Path, device: torch.device, settings: Score | None = None,
                comps: list[components.Component] | None = None, with_moments: bool = False,
                with_cnn_features: bool = False, layout_side: int = 0,
                stretch: Normalise | None = None) -> pd.DataFrame:
    """Score every row of one shard (its features and frames files); return ID columns + components +
    latent columns z0..zD (and, ``with_moments``, the tile statistics m0..m7, ``with_cnn_features``, the CNN's
    features f0..fH, ``layout_side`` S, the thumbnails t0..t(S*S-1), that gathered components need; ``stretch``:
    the ingest normalisation the thumbnails and the orientation score undo).
    ``reference``: the corner reference maps of every population; ``comps``: the components to compute
    (default: every per-shard one); ``settings``: the config's ``score`` section (default: the defaults);
    the frames, the reference and the CNN are only read when one of them needs it (``cnn`` may then be None)."""
    comps = components.per_shard() if comps is None else comps
    settings = settings or parse({}).score
    needs = {n for c in comps for n in c.needs}
    rows = manifest[(manifest.status == "ok") & (manifest.shard == shard)].sort_values("row")
    ref = Reference(reference, device) if "reference" in needs else None
    codes = ref.codes(population(rows)) if ref is not None else None
    owners = torch.from_numpy(owner_ids(shard, rows["row"].to_numpy())).to(device)
    with h5py.File(features_path, "r") as f:
        if len(f["features"]) != len(rows):
            raise ValueError(f"{features_path}: {len(f['features'])} rows but the manifest lists {len(rows)}")
    comp: dict[str, np.ndarray] = {}
    start = 0
    frames = frames_path if "frames" in needs else None
    if frames and "background" in {c.name for c in comps} and "intensity_offset" not in frame_columns(frames):
        log.warning("%s was ingested before shards kept each frame's offset: background is then the level above the "
                    "frame's low percentile, not the raw level (snakemake --forcerun ingest re-ingests)", frames)
    for b in prefetch(_reads(features_path, frames, settings.batch_size)):
        x, valid = torch.from_numpy(b["features"]).to(device), torch.from_numpy(b["valid"]).to(device)
        fr = torch.from_numpy(b["frames"]).to(device) if "frames" in b else None
        stats = {s: b[s] for s in (*STATS, *RAW_SCALE) if s in b}
        sb = ShardBatch(x, valid, stats, vae=vae, cnn=cnn, cnn_meta=cnn_meta, frames=fr,
                        reference=ref, codes=codes[start:start + len(x)] if codes is not None else None,
                        owners=owners[start:start + len(x)], settings=settings, stretch=stretch)
        values = batch_components(sb, comps, with_moments, with_cnn_features, layout_side, stretch)
        if not comp:  # filled in place: small arrays kept from every batch would fragment the heap
            comp = {k: np.empty((len(rows), *v.shape[1:]), v.dtype) for k, v in values.items()}
        for k, v in values.items():
            comp[k][start:start + len(x)] = v
        start += len(x)
    if not comp:
        return pd.DataFrame(columns=[*ID, *CARRIED])
    df = rows[[*ID, *CARRIED]].reset_index(drop=True)
    for c in comps:
        df[c.name] = comp[c.name].astype(np.float64)
    z = pd.DataFrame(comp["mu"], columns=[f"z{i}" for i in range(comp["mu"].shape[1])])
    extra = [pd.DataFrame(v, columns=[f"{prefix}{i}" for i in range(v.shape[1])])
             for key, prefix in GATHERED_PREFIX.items() if (v := comp.get(key)) is not None]
    return pd.concat([df, z, *extra], axis=1)


def _reads(features_path: str | Path, frames_path: str | Path | None, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """The shard's batches: features, valid fraction, ingest statistics and (``frames_path``) the tiles with
    their frames' intensity scale and offset."""
    frames = frame_batches(frames_path, batch) if frames_path is not None else None
    for b in iter_batches(features_path, ["features", "valid", *STATS], batch):
        yield {**b, **next(frames)} if frames is not None else b


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_scores(paths: list[str | Path]) -> list[pd.DataFrame]:
    return [pd.read_parquet(p) for p in paths]
