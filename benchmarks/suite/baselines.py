"""The baselines a reviewer asks for, on the set's own frames (read back from its files).

- Hand features (``hand_features``): a small documented vector per frame, in noise units, robustly scaled.
- PCA of the pixels (``pixel_pca``): each frame robustly standardised and asinh-stretched (sky/detector)
  or scaled to 0..1 (digits), flattened, projected on its first ``PCA_COMPONENTS`` principal components.
- PyOD's ECOD, IForest, LOF and KNN on each of those two representations.
- PCA reconstruction error (components explaining 90% of the variance) on the pixels.
- A small convolutional autoencoder (plain PyTorch, CPU, ``AE_EPOCHS`` epochs), mean squared error.
All are fitted on the whole set, anomalies included (unsupervised, as cnnpipe is).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import skew
from sklearn.decomposition import PCA
from sklearn.preprocessing import RobustScaler
from torch import nn

PCA_COMPONENTS = 20
AE_EPOCHS = 25

FEATURES = ["median", "log_sigma", "mean_offset", "std_ratio", "max_z", "min_z", "p99_z", "p1_z",
            "frac_above_5", "frac_below_5", "edge_energy", "column_dev", "row_dev", "skewness"]


def noise_sigma(x: np.ndarray) -> np.ndarray:
    """Per frame robust noise: 1.4826 x median absolute deviation; the std where that is 0; 1 where both are."""
    flat = x.reshape(len(x), -1)
    med = np.median(flat, axis=1, keepdims=True)
    mad = 1.4826 * np.median(np.abs(flat - med), axis=1)
    std = flat.std(axis=1)
    return np.where(mad > 1e-12, mad, np.where(std > 1e-12, std, 1.0))


def hand_features(x: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, 14), columns ``FEATURES``: median and log noise (level), mean offset, std / noise
    (tail weight), max/min and 99th/1st percentiles in noise units, fraction of pixels beyond +-5 noise,
    mean Sobel magnitude / noise (edge energy), largest column / row median offset in noise units,
    skewness. The heavy-tailed ones are log-compressed (sign * log1p |v|), then all robustly scaled."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    med = np.median(flat, axis=1)
    sig = noise_sigma(x)
    z = (flat - med[:, None]) / sig[:, None]
    zi = z.reshape(x.shape)
    sob = np.stack([np.hypot(ndimage.sobel(f, 0), ndimage.sobel(f, 1)).mean() for f in zi])
    col = np.abs(np.median(zi, axis=1)).max(axis=1)
    row = np.abs(np.median(zi, axis=2)).max(axis=1)
    p1, p99 = np.percentile(z, [1, 99], axis=1)
    f = np.stack([med, np.log(sig), z.mean(1), z.std(1), z.max(1), z.min(1), p99, p1, (z > 5).mean(1),
                  (z < -5).mean(1), sob, col, row, np.nan_to_num(skew(z, axis=1))], axis=1)
    heavy = [FEATURES.index(n) for n in ("median", "mean_offset", "std_ratio", "max_z", "min_z", "p99_z", "p1_z",
                                         "edge_energy", "column_dev", "row_dev", "skewness")]
    f[:, heavy] = np.sign(f[:, heavy]) * np.log1p(np.abs(f[:, heavy]))
    return RobustScaler().fit_transform(f)


def pixels(x: np.ndarray, digits: bool = False) -> np.ndarray:
    """Pixel representation: (N, H, W) -> (N, H, W); digits: /16; else asinh((x - median) / (3 noise))."""
    if digits:
        return (x / 16.0).astype(np.float32)
    med = np.median(x.reshape(len(x), -1), axis=1)[:, None, None]
    return np.arcsinh((x - med) / (3 * noise_sigma(x)[:, None, None])).astype(np.float32)


def pixel_pca(p: np.ndarray, seed: int) -> np.ndarray:
    flat = p.reshape(len(p), -1)
    return PCA(n_components=min(PCA_COMPONENTS, *flat.shape), random_state=seed).fit_transform(flat)


def pca_error(p: np.ndarray, seed: int, variance: float = 0.9) -> np.ndarray:
    flat = p.reshape(len(p), -1)
    pca = PCA(n_components=variance, svd_solver="full", random_state=seed).fit(flat)
    return ((flat - pca.inverse_transform(pca.transform(flat))) ** 2).mean(1)


class ConvAE(nn.Module):
    """Two stride-2 convolutions down (16, 32 channels), an 8-channel bottleneck, two transposed up."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(32, 8, 1))
        self.dec = nn.Sequential(nn.Conv2d(8, 32, 1), nn.ReLU(), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(16, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


def conv_ae(p: np.ndarray, seed: int, epochs: int = AE_EPOCHS, batch: int = 32) -> np.ndarray:
    """Train on all frames (sides divisible by 4), return each frame's mean squared reconstruction error.

    One torch thread: on a shared 2-core machine two threads run this small model ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return reconstruction_errors(ConvAE, p, seed, epochs, batch, lr=2e-3)
    finally:
        torch.set_num_threads(threads)


def reconstruction_errors(make_model, p: np.ndarray, seed: int, epochs: int, batch: int, lr: float) -> np.ndarray:
    """Train ``make_model()`` (built after seeding) to reconstruct the frames ``p`` (N, H, W) with Adam and a
    plain MSE loop; return each frame's mean squared reconstruction error (the autoencoder baselines)."""
    torch.manual_seed(seed)
    x = torch.from_numpy(p[:, None].astype(np.float32))
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(batch):
            loss = ((model(x[idx]) - x[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return torch.cat([((model(b) - b) ** 2).flatten(1).mean(1) for b in x.split(256)]).numpy()


def pyod_scores(feats: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """ECOD, IForest, LOF (20 neighbours) and KNN (5 neighbours, largest distance) outlier scores."""
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF

    models = {"ECOD": ECOD(), "IForest": IForest(n_estimators=200, random_state=seed),
              "LOF": LOF(n_neighbors=20), "KNN": KNN(n_neighbors=5)}
    return {name: m.fit(feats).decision_scores_ for name, m in models.items()}


def all_baselines(frames: np.ndarray, seed: int, digits: bool = False) -> dict[str, np.ndarray]:
    """Every baseline's score per frame (higher = more anomalous), keyed 'method (representation)'."""
    out = {f"{k} (hand features)": v for k, v in pyod_scores(hand_features(frames), seed).items()}
    p = pixels(frames, digits)
    out |= {f"{k} (pixel PCA)": v for k, v in pyod_scores(pixel_pca(p, seed), seed).items()}
    out["PCA reconstruction"] = pca_error(p, seed)
    out["conv autoencoder"] = conv_ae(p, seed)
    return out
