"""Gathered components: density of the latent space over every ranked frame."""
from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors

from .batch import LatentSpace


def knn_distance(z: np.ndarray, k: int) -> np.ndarray:
    """Mean distance to the k nearest other frames in latent space (isolated = anomalous)."""
    k = min(k, len(z) - 1)
    if k < 1:
        return np.zeros(len(z))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    return dist[:, 1:].mean(axis=1)


def mahalanobis_distance(z: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each latent to the (Ledoit-Wolf shrunk) latent distribution."""
    if len(z) < 3:
        return np.zeros(len(z))
    lw = LedoitWolf().fit(z)
    return np.sqrt(lw.mahalanobis(z))


def latent_knn(s: LatentSpace) -> np.ndarray:
    return knn_distance(s.z, s.k)


def mahalanobis(s: LatentSpace) -> np.ndarray:
    return mahalanobis_distance(s.z)
