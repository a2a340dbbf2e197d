"""Anomaly scoring: per-shard model components, then gathered latent-space components, ensemble and ranking.

Per shard (``score_shard``): VAE reconstruction error (masked; intensity and Sobel), KL term, latent mean,
CNN score, the pixel outliers measured at ingestion (sharpness: cosmic rays; coldness: dead columns) and the
corner strength against its population's reference (corner: kinked tracks, displaced vertices) and the
brightest straight line (line: satellite trails, straight cosmic rays).
Gathered (``rank``): kNN distance and Mahalanobis distance in latent space, a weighted ensemble of robustly
normalised components within each population, the human-label re-ranking, the roll-up of tiles to frames,
the report's gallery arrays and a 2-D latent map.
"""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from .atomic import atomic_path
from .config import Config
from .corners import Reference
from .lines import line_strength
from .ingest import write_csv
from .models.cnn import cnn_score
from .models.vae import vae_terms
from .pixel_outliers import STATS
from .population import population
from .shards import iter_batches

log = logging.getLogger(__name__)

ID = ["source", "key", "index"]
SHARD_COMPONENTS = ["recon", "recon_sobel", "kl", "masked", "sobel_peak", *STATS, "corner", "line", "cnn"]
COMPONENTS = [*SHARD_COMPONENTS, "latent_knn", "mahalanobis"]


# ---- per shard: model forward passes ---------------------------------------------------------------
def top_mean(values: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per-sample mean of the largest ``fraction`` of the unmasked values of (N, H, W) maps.

    A satellite trail or a dead column touches a few percent of the pixels: averaging the whole frame
    would drown it in noise, the worst few percent keep it.
    """
    flat = values.masked_fill(~mask, float("-inf")).flatten(1)
    k = max(1, int(round(fraction * flat.shape[1])))
    top = flat.topk(k, dim=1).values
    return torch.where(torch.isfinite(top), top, torch.zeros_like(top)).mean(dim=1)


@torch.no_grad()
def model_components(vae, cnn, cnn_meta: dict, x: torch.Tensor, valid: torch.Tensor,
                     top_fraction: float = 0.03) -> dict[str, np.ndarray]:
    """Per-frame component scores of a feature batch (N, C, H, W) whose unmasked fraction is ``valid``.

    recon / recon_sobel: mean of the worst ``top_fraction`` squared VAE residuals in intensity / Sobel, each
    divided by the mean squared residual of its pixel over the training frames (``vae.residual_scale``):
    a track far from where tracks usually are counts, a bright star core the model always blurs does not;
    kl: the VAE's KL term; masked: fraction of masked pixels; sobel_peak: the strongest edge;
    cnn: the CNN's score; mu: the latent means (for the gathered latent-space scores).
    """
    recon, mu, logvar = vae(x)
    mask = valid >= 0.5
    residual = (x.float() - recon.float()) ** 2 / vae.residual_scale
    out = {
        "recon": top_mean(residual[:, 0], mask, top_fraction),
        "recon_sobel": top_mean(residual[:, 1], mask, top_fraction),
        "kl": vae_terms(x, recon, valid, mu, logvar)["kl"],
        "masked": 1.0 - valid.float().mean(dim=(1, 2)),
        "sobel_peak": top_mean(x[:, 1].float(), mask, 0.0),
        "cnn": cnn_score(cnn, x, cnn_meta),
        "mu": mu.float(),
    }
    return {k: v.cpu().numpy() for k, v in out.items()}


def score_shard(features_path: str | Path, frames_path: str | Path, manifest: pd.DataFrame, shard: int, vae, cnn,
                cnn_meta: dict, reference: str | Path, device: torch.device, top_fraction: float = 0.03,
                line_angles: int = 64, batch: int = 256) -> pd.DataFrame:
    """Score every row of one shard (its features and frames files); return ID columns + components +
    latent columns z0..zD. ``reference``: the corner reference maps of every population."""
    rows = manifest[(manifest.status == "ok") & (manifest.shard == shard)].sort_values("row")
    ref = Reference(reference, device)
    codes = ref.codes(population(rows))
    parts, start = [], 0
    for b, fr in zip(iter_batches(features_path, ["features", "valid", *STATS], batch),
                     iter_batches(frames_path, ["frames"], batch)):
        x, valid = torch.from_numpy(b["features"]).to(device), torch.from_numpy(b["valid"]).to(device)
        corner = ref.ratio(torch.from_numpy(fr["frames"]).to(device), codes[start:start + len(x)])
        parts.append({**model_components(vae, cnn, cnn_meta, x, valid, top_fraction), **{s: b[s] for s in STATS},
                      "corner": corner.amax(dim=(1, 2)).cpu().numpy(),
                      "line": line_strength(x[:, 0].float(), line_angles).cpu().numpy()})
        start += len(x)
    if not parts:
        return pd.DataFrame(columns=[*ID, "frame", "y0", "x0", "shard", "row"])
    comp = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if len(comp["recon"]) != len(rows):
        raise ValueError(f"{features_path}: {len(comp['recon'])} rows but the manifest lists {len(rows)}")
    df = rows[[*ID, "frame", "y0", "x0", "shard", "row"]].reset_index(drop=True)
    for k in SHARD_COMPONENTS:
        df[k] = comp[k].astype(np.float64)
    z = pd.DataFrame(comp["mu"], columns=[f"z{i}" for i in range(comp["mu"].shape[1])])
    return pd.concat([df, z], axis=1)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


# ---- gathered: latent density, ensemble, labels ----------------------------------------------------
def knn_distance(z: np.ndarray, k: int) -> np.ndarray:
    """Mean distance to the k nearest other frames in latent space (isolated = anomalous)."""
    k = min(k, len(z) - 1)
    if k < 1:
        return np.zeros(len(z))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    return dist[:, 1:].mean(axis=1)


def mahalanobis(z: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each latent to the (Ledoit-Wolf shrunk) latent distribution."""
    if len(z) < 3:
        return np.zeros(len(z))
    lw = LedoitWolf().fit(z)
    return np.sqrt(lw.mahalanobis(z))


def rank_normalise(values: np.ndarray) -> np.ndarray:
    """Rank normalisation to (0, 1]: the fraction of values <= each value (ties share a rank)."""
    return pd.Series(values).rank(method="max", pct=True).to_numpy()


def robust_z(values: np.ndarray, clip: float = 50.0) -> np.ndarray:
    """Robust z-score ``(x - median) / (1.4826 MAD)``, only the anomalous side kept: clipped to [0, clip].

    A component with no spread at all (MAD = 0, e.g. no frame has masked pixels) scores 0 where it equals
    the median and ``clip`` elsewhere.
    """
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    dev = values - med
    z = dev / mad if mad > 0 else np.where(dev > 0, np.inf, 0.0)
    return np.clip(z, 0.0, clip)


def ensemble(df: pd.DataFrame, weights: dict[str, float], method: str = "robust_z", power: float = 4.0,
             pooled: np.ndarray | None = None) -> np.ndarray:
    """Combine the components, normalised within each population, into one score (higher = stranger).

    ``robust_z``: weighted power mean ``(sum w z^p / sum w)^(1/p)`` of robust z-scores: an anomaly that is
    extreme in a single component (a cosmic ray in ``sobel_peak``, a NaN patch in ``masked``) still ranks
    high, which a plain mean of ranks would dilute. ``rank``: weighted mean of rank-normalised components.
    ``pooled`` (bool per row, see :func:`small_populations`): rows normalised against the whole run instead
    of their own population.
    """
    used = {c: w for c, w in weights.items() if c in df and w > 0}
    wsum = max(sum(used.values()), 1e-12)
    total = np.zeros(len(df))
    whole = "\0whole run"  # no population is named so (paths hold no NUL)
    groups = np.where(pooled, whole, population(df)) if pooled is not None else population(df)
    for name, idx in df.groupby(groups).indices.items():
        for c, w in used.items():
            v = df[c].to_numpy(np.float64)
            v = v if name == whole else v[idx]  # a pooled row is compared with every frame of the run
            z = rank_normalise(v) if method == "rank" else robust_z(v) ** power
            total[idx] += w * (z[idx] if name == whole else z)
    return total / wsum if method == "rank" else (total / wsum) ** (1.0 / power)


def small_populations(df: pd.DataFrame, min_frames: int) -> tuple[np.ndarray, dict[str, int]]:
    """Rows whose population has fewer than ``min_frames`` rows (bool per row) and those populations' sizes.

    A robust z-score needs a population to measure spread: a file alone in its folder is its own median
    and always scored 0. Such rows are normalised against the whole run instead (``pooled``)."""
    pop = pd.Series(population(df), index=df.index)
    sizes = pop.map(pop.value_counts())
    small = (sizes < min_frames).to_numpy()
    return small, {str(p): int(n) for p, n in pop[small].value_counts().sort_index().items()}


def label_adjustment(z: np.ndarray, df: pd.DataFrame, labels: pd.DataFrame, n_neighbours: int) -> tuple[np.ndarray, list]:
    """Score shift from human labels: -2 for a frame marked boring (+2 interesting) and up to -0.5 (+0.5)
    for its ``n_neighbours`` nearest latent neighbours, fading with distance (Astronomaly-style active
    learning). The caller multiplies it by the score range, so a labelled frame lands below (above) every
    unlabelled one whatever the scores' scale, and its neighbours move by up to half the range."""
    adj = np.zeros(len(df))
    marks = [""] * len(df)
    if labels.empty:
        return adj, marks
    pos = {k: i for i, k in enumerate(zip(df.source, df.key.astype(str), df["index"].astype(int)))}
    nn = NearestNeighbors(n_neighbors=min(n_neighbours + 1, len(z))).fit(z)
    scale = np.median(knn_distance(z, max(1, n_neighbours))) + 1e-12
    for src, key, idx, label in zip(labels.source, labels.key.astype(str), labels["index"].astype(int), labels.label):
        i = pos.get((src, key, idx))
        if i is None:
            log.warning("labels: %s [%s] %d is not among the ranked frames; ignored", src, key, idx)
            continue
        sign = 1.0 if label == "interesting" else -1.0
        dist, nbr = nn.kneighbors(z[i:i + 1])
        for d, j in zip(dist[0], nbr[0]):
            adj[j] += sign * (2.0 if j == i else 0.5 * np.exp(-(d / scale) ** 2))
        marks[i] = label
    return adj, marks


def rank_scores(cfg: Config, parts: list[pd.DataFrame], labels: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """All shards' scores -> the ranked table (output contract) and the latents in the same order."""
    df = pd.concat(parts, ignore_index=True)
    zcols = [c for c in df.columns if c.startswith("z") and c[1:].isdigit()]
    z = df[zcols].to_numpy(np.float64)
    df["latent_knn"] = knn_distance(z, cfg.score.k)
    df["mahalanobis"] = mahalanobis(z)
    pooled, small = small_populations(df, cfg.score.min_population)
    for name, n in small.items():
        log.warning("population %s has %d frames (fewer than score.min_population = %d): scored against the "
                    "whole run", name, n, cfg.score.min_population)
    df["score"] = ensemble(df, cfg.score.weights, cfg.score.ensemble, cfg.score.power, pooled)
    df["pooled"] = pooled
    adj, marks = label_adjustment(z, df, labels, cfg.score.label_neighbours)
    df["score"] += adj * (df.score.max() - df.score.min())
    df["label"] = marks
    order = np.lexsort((df["index"].to_numpy(), df.key.to_numpy(), df.source.to_numpy(), -df.score.to_numpy()))
    df, z = df.iloc[order].reset_index(drop=True), z[order]
    df["rank"] = np.arange(1, len(df) + 1)
    comps = [c for c in COMPONENTS if c in df]
    return df[[*ID, "score", "rank", *comps, "label", "pooled", "frame", "y0", "x0", "shard", "row"]], z


def by_frame(ranked: pd.DataFrame) -> pd.DataFrame:
    """Roll tiles up to their frame: each column the max over the frame's tiles, re-ranked."""
    comps = [c for c in COMPONENTS if c in ranked]
    g = ranked.groupby(["source", "key", "frame"], sort=False)
    out = g[["score", *comps]].max().reset_index()
    out["tiles"] = g.size().to_numpy()
    out = out.sort_values(["score", "source", "key", "frame"], ascending=[False, True, True, True])
    out["rank"] = np.arange(1, len(out) + 1)
    return out[["source", "key", "frame", "score", "rank", *comps, "tiles"]]


# ---- report inputs -----------------------------------------------------------------------------------
def latent_map(ranked: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    """2-D PCA projection of the latents, for the report's latent-space map."""
    xy = PCA(n_components=2).fit_transform(z) if len(z) >= 2 and z.shape[1] >= 2 else np.zeros((len(z), 2))
    out = ranked[[*ID, "score", "rank"]].copy()
    out["x"], out["y"] = xy[:, 0], xy[:, 1]
    return out


@torch.no_grad()
def gallery(ranked: pd.DataFrame, results: Path, vae, reference: str | Path, device: torch.device, top_k: int,
            out: str | Path) -> None:
    """Arrays for the report's top-K: input tile, Sobel map, VAE reconstruction, residual and the corner
    response over its population's reference (where a kink or an odd vertex is)."""
    top = ranked.head(top_k)
    inputs, feats, valids = [], [], []
    for shard, row in zip(top.shard, top.row):
        with h5py.File(results / "frames" / f"shard-{shard}.h5") as f:
            inputs.append(f["frames"][row])
        with h5py.File(results / "features" / f"shard-{shard}.h5") as f:
            feats.append(f["features"][row])
            valids.append(f["valid"][row])
    x = torch.from_numpy(np.stack(feats)).to(device)
    recon = vae(x)[0][:, 0].float().cpu().numpy()
    intensity = x[:, 0].cpu().numpy()
    masked = np.stack(valids) < 0.5
    ref = Reference(reference, device)
    corner = ref.ratio(torch.from_numpy(np.stack(inputs)).to(device), ref.codes(population(top)))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f["input"] = np.stack(inputs)
        f["corner"] = corner.cpu().numpy()
        f["sobel"] = x[:, 1].cpu().numpy()
        f["recon"] = recon
        f["residual"] = np.where(masked, np.nan, intensity - recon)
        strings = h5py.string_dtype()
        f.create_dataset("source", data=top.source.tolist(), dtype=strings)
        f.create_dataset("key", data=top.key.astype(str).tolist(), dtype=strings)
        f["index"] = top["index"].to_numpy()
        f["rank"] = top["rank"].to_numpy()


def read_scores(paths: list[str | Path]) -> list[pd.DataFrame]:
    return [pd.read_parquet(p) for p in paths]


def write_rank_outputs(ranked: pd.DataFrame, z: np.ndarray, anomalies: str | Path, frames: str | Path,
                       latents: str | Path) -> None:
    write_csv(ranked.drop(columns=["frame", "y0", "x0", "shard", "row"]), anomalies)
    write_csv(by_frame(ranked), frames)
    write_csv(latent_map(ranked, z), latents)
