"""Gathered components: density of the latent space over every ranked frame."""
from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors

from .batch import LatentSpace


def knn_distance(z: np.ndarray, k: int, sample: int = 0, seed: int = 0) -> np.ndarray:
    """Distance to the k-th nearest other frame (isolated = anomalous): the kNN outlier score of Ramaswamy et
    al. 2000 (PyOD's KNN, the suite's strongest digits baseline). Not the mean over the k nearest: anomalies
    that come in a small group (25 nines among 0-8) are each other's nearest neighbours, and the mean counts
    those; the k-th does only when the group holds k others (dev 6-vs-9 figures in README).

    ``sample`` > 0 and fewer than ``len(z)``: the neighbours are sought among a uniform sample of that many
    frames (seeded), so the cost grows linearly with the number of frames instead of quadratically; a
    sampled frame does not count as its own neighbour.
    """
    n = len(z)
    k = min(k, n - 1)
    if k < 1 or z.shape[1] == 0:   # no neighbours, or no dimension to tell frames apart
        return np.zeros(n)
    if not 0 < sample < n:
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
        return dist[:, k]
    ref = np.sort(np.random.default_rng(seed).choice(n, size=max(sample, k + 1), replace=False))
    dist, ind = NearestNeighbors(n_neighbors=k + 1).fit(z[ref]).kneighbors(z)
    keep = ref[ind] != np.arange(n)[:, None]           # drop the frame itself where it is in the sample ...
    keep[keep.all(axis=1), k] = False                   # ... else the (k+1)-th neighbour
    return dist[keep].reshape(n, k)[:, -1]


def mahalanobis_distance(z: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each latent to the (Ledoit-Wolf shrunk) latent distribution."""
    if len(z) < 3 or z.shape[1] == 0:
        return np.zeros(len(z))
    lw = LedoitWolf().fit(z)
    return np.sqrt(lw.mahalanobis(z))


def robust_scale(x: np.ndarray) -> np.ndarray:
    """Each column centred on its median and divided by its interquartile range (1 where that is 0)."""
    med = np.median(x, axis=0)
    iqr = np.subtract(*np.percentile(x, [75, 25], axis=0))
    return (x - med) / np.where(iqr > 0, iqr, 1.0)


def moments_knn(s: LatentSpace) -> np.ndarray:
    return knn_distance(robust_scale(s.moments), s.k, s.knn_sample)


def cnn_knn(s: LatentSpace) -> np.ndarray:
    f = s.cnn_features
    return knn_distance(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12), s.k, s.knn_sample)


def layout_knn(s: LatentSpace) -> np.ndarray:
    return knn_distance(s.layout, s.k, s.knn_sample)


def alignment(thumbs: np.ndarray) -> float:
    """How aligned (N, P) thumbnails are: the variance over pixels of their mean thumbnail over the mean over
    pixels of their variance across frames. Upright digits share a layout (the dev digits sets: 1.5-4.6);
    where objects sit anywhere the mean thumbnail is flat (dev sky 0.002, helical tracks from a central
    vertex 0.18)."""
    if len(thumbs) < 2:
        return 0.0
    spread = thumbs.var(axis=0).mean()
    return float(thumbs.mean(axis=0).var() / spread) if spread > 0 else 0.0


def latent_knn(s: LatentSpace) -> np.ndarray:
    return knn_distance(s.z, s.k, s.knn_sample)


def mahalanobis(s: LatentSpace) -> np.ndarray:
    return mahalanobis_distance(s.z)
