"""Gathering the shards' scores: the gathered components (latent-space density), a weighted ensemble of
components normalised within each population, the human-label re-ranking, the roll-up of tiles to frames
and the 2-D latent map.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from . import components
from .components.batch import LatentSpace
from .components.latent import alignment, knn_distance
from .config import Config
from .labels import read_labels  # noqa: F401  (what the rank verb reads labels with)
from .models.vae import active_units
from .population import population
from .score import CARRIED, GATHERED_PREFIX, ID
from .sky import COLUMNS as SKY_COLUMNS
from .tables import write_csv

log = logging.getLogger(__name__)


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


def pareto_shape(ratio: float, r1: float, r2: float) -> float:
    """Shape ``xi`` of a generalised Pareto whose excess quantiles at tail probabilities ``r1 > r2`` are in
    ``ratio`` = y(r2) / y(r1), with y(r) = sigma (r^-xi - 1) / xi; clipped to [0, 0.95] (bisection)."""
    def f(xi: float) -> float:
        return np.log(r2) / np.log(r1) if xi == 0 else (r2 ** -xi - 1) / (r1 ** -xi - 1)
    lo, hi = 0.0, 0.95
    if ratio <= f(lo):
        return lo
    if ratio >= f(hi):
        return hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < ratio else (lo, mid)
    return (lo + hi) / 2


def tail_surprise(values: np.ndarray, quantile: float = 0.9, cap: float = 50.0) -> np.ndarray:
    """``-log p`` with ``p`` the probability of a value at least this high in its own population: the
    empirical fraction up to the ``quantile``, beyond it a generalised Pareto tail (clipped to at most
    ``cap``), so the most extreme frame is not capped at ``1/n``.

    The tail is fitted to the bulk, not to the extremes (which are where the anomalies are): its threshold
    is the median and its shape and scale come from the upper quartile and the ``quantile`` (the shape
    clipped to [0, 0.95]: a light tail is treated as exponential, a heavy one, like the sharpest stars of busy
    star fields, keeps its weight). Every component is put on this one scale: a component whose normal
    frames have a long tail earns little for its usual extremes, a nearly constant one earns a lot for a
    rare departure (a component constant on most frames: ``cap`` for any value above that constant).
    """
    v = np.asarray(values, np.float64)
    n = len(v)
    if n == 0:
        return v
    p = (n - pd.Series(v).rank(method="min").to_numpy() + 1) / n      # fraction of values >= each
    u, q1, q2 = np.quantile(v, [0.5, 0.75, quantile])
    hi = v > q2
    y1, y2 = q1 - u, q2 - u
    r1, r2 = 0.5, (1 - quantile) / 0.5       # tail probabilities of q1, q2 beyond the median
    if y2 <= 0:
        p[hi] = 0.0
    else:
        xi = pareto_shape(y2 / y1, r1, r2) if y1 > 0 else 0.95
        sigma = y2 * xi / (r2 ** -xi - 1) if xi > 0 else y2 / np.log(1 / r2)
        y = (v[hi] - u) / sigma
        p[hi] = 0.5 * (np.exp(-y) if xi == 0 else (1 + xi * y) ** (-1 / xi))
    return np.minimum(-np.log(np.maximum(p, 1e-300)), cap)


def consensus_factors(terms: np.ndarray, tail_top: int, fraction: float, minimum: int) -> np.ndarray:
    """How far each column of ``terms`` (one population's weighted tail surprises, rows = frames) agrees with
    the other columns: the rows that the tail ensemble of the *other* columns puts in its top ``fraction``
    (at least ``minimum``, at most half) are taken as pseudo-anomalies, and the column's agreement is its
    Gini coefficient 2 AUROC - 1 (clipped at 0) in separating them from the rest, divided by the largest.

    Labels are never used. A component that sees this population's anomalies agrees with the others that
    do; one that fires only on its own noise tail (sharpness on busy star fields) or not at all on this
    kind of data (a constant column) does not. Leaving the column out of its own pseudo-labels keeps a
    heavy noise tail from confirming itself. 1 = the most agreeing column."""
    n, m = terms.shape
    k = min(n // 2, max(minimum, int(round(fraction * n))))
    if k < 1 or m < 2:
        return np.ones(m)
    ranks = rankdata(terms, axis=0)                                # ties share their mean rank
    gini = np.zeros(m)
    for j in range(m):
        others = np.delete(terms, j, axis=1)
        consensus = -np.sort(-others, axis=1)[:, :tail_top].sum(axis=1)
        top = np.argpartition(-consensus, k - 1)[:k]
        gini[j] = 2 * (ranks[top, j].sum() - k * (k + 1) / 2) / (k * (n - k)) - 1
    gini = np.clip(gini, 0, None)
    return gini / gini.max() if gini.max() > 0 else np.ones(m)


def ensemble(df: pd.DataFrame, weights: dict[str, float], method: str, power: float,
             pooled: np.ndarray | None = None, tail_top: int = 3, tail_quantile: float = 0.9,
             consensus: float = 0.0, consensus_fraction: float = 0.05, consensus_min: int = 10,
             consensus_exempt: float = np.inf) -> np.ndarray:
    """Combine the components, normalised within each population, into one score (higher = stranger).

    ``tail``: each component as its weighted tail surprise (:func:`tail_surprise`), the frame's ``tail_top``
    largest summed: one truly extreme component lifts a frame, a few moderately unusual ones together do
    too, and no component's noise tail dominates (each is calibrated against its own population).
    ``robust_z``: weighted power mean ``(sum w z^p / sum w)^(1/p)`` of robust z-scores: an anomaly that is
    extreme in a single component (a cosmic ray in ``sharpness``, a NaN patch in ``masked``) still ranks
    high, which a plain mean of ranks would dilute. ``rank``: weighted mean of rank-normalised components.
    A ``two_sided`` component (the component table) counts by its distance from its population's median
    (:func:`cnnpipe.components.departure`).
    ``method`` and ``power`` come from the config (``score.ensemble``, ``score.power``). ``pooled`` (bool per
    row, see :func:`small_populations`): rows normalised against the whole run instead of their population.
    ``consensus`` (tail only): each population's weights move this far from the configured ones towards
    their :func:`consensus_factors`, so the components that see this population's anomalies count most.
    It shrinks a component's ordinary tail, not its extremes: the part of a surprise above
    ``consensus_exempt`` keeps the configured weight, so one truly extreme component still lifts a frame
    where the population's consensus is about other anomalies (a satellite trail among cosmic rays).
    """
    used = {c: w for c, w in weights.items() if c in df and w > 0}
    wsum = max(sum(used.values()), 1e-12)
    exempt = np.array(list(used.values())) * consensus_exempt     # weighted surprise beyond it: no consensus
    whole = "\0whole run"  # no population is named so (paths hold no NUL)
    groups = np.where(pooled, whole, population(df)) if pooled is not None else population(df)
    normalise = {"tail": lambda v: tail_surprise(v, tail_quantile), "rank": rank_normalise,
                 "robust_z": lambda v: robust_z(v) ** power}[method]
    terms = np.zeros((len(df), len(used)))      # each row's weighted, normalised components
    for name, idx in df.groupby(groups).indices.items():
        for j, (c, w) in enumerate(used.items()):
            v = df[c].to_numpy(np.float64)
            v = components.departure(c, v if name == whole else v[idx])  # a pooled row: against the whole run
            terms[idx, j] = w * (normalise(v)[idx] if name == whole else normalise(v))
        if method == "tail" and consensus > 0:
            factors = consensus_factors(terms[idx], tail_top, consensus_fraction, consensus_min)
            t = terms[idx]
            terms[idx] = np.minimum(t, exempt) * ((1 - consensus) + consensus * factors) + np.maximum(t - exempt, 0)
            log.info("population %s: consensus weights %s", "(pooled)" if name == whole else name,
                     ", ".join(f"{c} {f:.2f}" for c, f in zip(used, factors)))
    if method == "tail":
        return -np.sort(-terms, axis=1)[:, :tail_top].sum(axis=1)
    total = terms.sum(axis=1) / wsum
    return total if method == "rank" else total ** (1.0 / power)


def small_populations(df: pd.DataFrame, min_frames: int) -> tuple[np.ndarray, dict[str, int]]:
    """Rows whose population has fewer than ``min_frames`` rows (bool per row) and those populations' sizes.

    A robust z-score needs a population to measure spread: a file alone in its folder is its own median
    and always scored 0. Such rows are normalised against the whole run instead (``pooled``)."""
    pop = pd.Series(population(df), index=df.index)
    small = (pop.map(pop.value_counts()) < min_frames).to_numpy()
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


def component_columns(df: pd.DataFrame) -> list[str]:
    """The component columns of a scores table, in the component table's order."""
    return [c for c in components.names() if c in df]


def aligned(thumbs: np.ndarray, threshold: float) -> bool:
    """Whether the frames share a layout (:func:`cnnpipe.components.latent.alignment` at least ``threshold``),
    so that layout_knn means something; logged either way."""
    a = alignment(thumbs)
    log.info("layout_knn: frame alignment %.3f (score.layout_alignment %g): %s", a, threshold,
             "used" if a >= threshold else "not used, the frames are not aligned")
    return a >= threshold


def rank_scores(cfg: Config, parts: list[pd.DataFrame], labels: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """All shards' scores -> the ranked table (output contract) and the latents in the same order."""
    df = pd.concat([p for p in parts if len(p)] or parts, ignore_index=True)  # an empty shard's columns are untyped
    zcols = [c for c in df.columns if c.startswith("z") and c[1:].isdigit()]
    z = df[zcols].to_numpy(np.float64)
    mcols, fcols, tcols = ([c for c in df.columns if c.startswith(p) and c[1:].isdigit()]
                           for p in GATHERED_PREFIX.values())
    active = active_units(z, cfg.score.latent_active)
    log.info("latent space: %d of %d dimensions active (posterior-mean variance over the tiles > "
             "score.latent_active %g)%s", active.shape[1], z.shape[1], cfg.score.latent_active,
             "" if active.shape[1] else ": the VAE's posterior is the same for every tile, latent_knn is 0")
    space = LatentSpace(active, cfg.score.k, cfg.score.knn_sample, df[mcols].to_numpy(np.float64),
                        df[fcols].to_numpy(np.float64), df[tcols].to_numpy(np.float64))
    layout_ok = bool(tcols) and aligned(space.layout, cfg.score.layout_alignment)
    for c in components.gathered(cfg.score.weights):
        # no CNN features where no CNN was trained, no thumbnails where the data have no orientation: no column
        if ("cnn" not in c.needs or fcols) and ("layout" not in c.needs or layout_ok):
            df[c.name] = c.compute()(space)
    if "layout_knn" in df:   # aligned frames: their thumbnails hold what the "unaligned" components measure
        df = df.drop(columns=[c.name for c in components.REGISTRY if "unaligned" in c.needs and c.name in df])
    pooled, small = small_populations(df, cfg.score.min_population)
    for name, n in small.items():
        log.warning("population %s has %d frames (fewer than score.min_population = %d): scored against the "
                    "whole run", name, n, cfg.score.min_population)
    s = cfg.score
    df["score"] = ensemble(df, s.weights, s.ensemble, s.power, pooled, s.tail_top, s.tail_quantile,
                           s.consensus, s.consensus_fraction, s.consensus_min, s.consensus_exempt)
    df["pooled"] = pooled
    adj, marks = label_adjustment(z, df, labels, cfg.score.label_neighbours)
    df["score"] += adj * (df.score.max() - df.score.min())
    df["label"] = marks
    order = np.lexsort((df["index"].to_numpy(), df.key.to_numpy(), df.source.to_numpy(), -df.score.to_numpy()))
    df, z = df.iloc[order].reset_index(drop=True), z[order]
    df["rank"] = np.arange(1, len(df) + 1)
    return df[[*ID, "score", "rank", *component_columns(df), "label", "pooled", *CARRIED]], z


def by_frame(ranked: pd.DataFrame) -> pd.DataFrame:
    """Roll tiles up to their frame: each score the max over the frame's tiles, re-ranked; the sky columns
    (when present) are those of the frame's highest-scoring tile."""
    comps = component_columns(ranked)
    g = ranked.groupby(["source", "key", "frame"], sort=False)
    out = g[["score", *comps]].max().reset_index()
    out["tiles"] = g.size().to_numpy()
    where = [c for c in SKY_COLUMNS if c in ranked]
    out = pd.concat([out, ranked.loc[g["score"].idxmax().to_numpy(), where].reset_index(drop=True)], axis=1)
    out = out.sort_values(["score", "source", "key", "frame"], ascending=[False, True, True, True])
    out["rank"] = np.arange(1, len(out) + 1)
    return out[["source", "key", "frame", "score", "rank", *comps, "tiles", *where]]


def latent_map(ranked: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    """2-D PCA projection of the latents, for the report's latent-space map."""
    xy = PCA(n_components=2).fit_transform(z) if len(z) >= 2 and z.shape[1] >= 2 else np.zeros((len(z), 2))
    out = ranked[[*ID, "score", "rank"]].copy()
    out["x"], out["y"] = xy[:, 0], xy[:, 1]
    return out


def write_rank_outputs(ranked: pd.DataFrame, z: np.ndarray, anomalies: str | Path, frames: str | Path,
                       latents: str | Path) -> None:
    write_csv(ranked.drop(columns=CARRIED), anomalies)
    write_csv(by_frame(ranked), frames)
    write_csv(latent_map(ranked, z), latents)
