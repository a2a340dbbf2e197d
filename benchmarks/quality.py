"""Detection quality on generated data with ground truth: cnnpipe (the real workflow) vs baselines.

Sets: (a) the demo's sky frames with injected artefacts (satellite trail, cosmic rays, dead column, NaN
patch), (b) the demo's simulated detector events with odd topologies (kink, displaced vertex, straight
cosmic), both from one run of the workflow on the demo config; (c) scikit-learn's 8x8 digits upsampled to
64x64, one class as the anomaly (a small fraction of the set), run with rotations and flips off.
cnnpipe: ``snakemake --cores 2`` in a temporary folder, its per-frame table ``anomalies_by_frame.csv``.
Baselines, in this script on the same ingested (normalised) tiles, tile scores rolled up to frames by max
like cnnpipe: IsolationForest on pixels; IsolationForest on simple image features (mean, std, min, max,
percentiles, Sobel energy); PCA reconstruction error; a small convolutional autoencoder (a few epochs).
Masked (NaN) pixels are 0 for the baselines. Metrics: AUROC, average precision (AP), precision at k
(k = number of anomalies) and recall at k per anomaly type.
Run: python benchmarks/quality.py [--sky 320 --tracks 320 --fraction 0.05] [--digit 7]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from common import run_workflow
from suite.baselines import reconstruction_errors

FRAME_ID = ["source", "key", "frame"]


# ---- data ------------------------------------------------------------------------------------------
def write_digits(path: Path, anomaly: int, n_anomalies: int, n_normal: int, seed: int) -> pd.DataFrame:
    """Digits of every class but ``anomaly`` plus ``n_anomalies`` of it, shuffled, upsampled 8x8 -> 64x64
    (bilinear), as dataset ``images``; no labels in the file. Returns the truth table."""
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(d.target != anomaly))[:n_normal]
    odd = rng.permutation(np.flatnonzero(d.target == anomaly))[:n_anomalies]
    idx = rng.permutation(np.concatenate([normal, odd]))
    imgs = np.stack([resize(d.images[i] / 16.0, (64, 64), order=1, anti_aliasing=False) for i in idx])
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=imgs.astype(np.float32))
    is_odd = np.isin(idx, odd)
    return pd.DataFrame({"source": str(path), "key": "/images", "frame": np.flatnonzero(is_odd),
                         "anomaly": f"digit_{anomaly}"})


def load_tiles(results: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Every ok manifest row with its ingested tile (64x64, NaN -> 0), in manifest order."""
    man = pd.read_csv(results / "manifest.csv", keep_default_na=False, na_values=[""], dtype={"key": str})
    man = man[man.status == "ok"].reset_index(drop=True)
    tiles = np.empty((len(man), *h5py.File(results / "frames" / "shard-0.h5")["frames"].shape[1:]), np.float32)
    for shard, g in man.groupby("shard"):
        with h5py.File(results / "frames" / f"shard-{int(shard)}.h5") as f:
            tiles[g.index.to_numpy()] = f["frames"][:][g["row"].to_numpy(int)]
    return man, np.nan_to_num(tiles, nan=0.0)


# ---- baselines -------------------------------------------------------------------------------------
def iforest(x: np.ndarray, seed: int) -> np.ndarray:
    return -IsolationForest(n_estimators=200, random_state=seed).fit(x).score_samples(x)


def image_features(t: np.ndarray) -> np.ndarray:
    """Per tile: mean, std, min, max, 1/5/50/95/99th percentiles, Sobel energy (mean squared magnitude)."""
    flat = t.reshape(len(t), -1)
    sob = np.stack([np.hypot(ndimage.sobel(x, 0), ndimage.sobel(x, 1)) for x in t]).reshape(len(t), -1)
    feats = [flat.mean(1), flat.std(1), flat.min(1), flat.max(1),
             *np.percentile(flat, [1, 5, 50, 95, 99], axis=1), (sob ** 2).mean(1)]
    f = np.stack(feats, axis=1)
    return (f - f.mean(0)) / (f.std(0) + 1e-9)


def pca_error(x: np.ndarray, seed: int, variance: float = 0.9) -> np.ndarray:
    p = PCA(n_components=variance, svd_solver="full", random_state=seed).fit(x)
    return ((x - p.inverse_transform(p.transform(x))) ** 2).mean(1)


class ConvAE(nn.Module):
    """A plain small convolutional autoencoder: 64 -> 32 -> 16 -> 8 and back."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())
        self.dec = nn.Sequential(nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 16, 4, 2, 1),
                                 nn.ReLU(), nn.ConvTranspose2d(16, 1, 4, 2, 1))

    def forward(self, x):
        return self.dec(self.enc(x))


def conv_ae(t: np.ndarray, seed: int, epochs: int = 8, batch: int = 64) -> np.ndarray:
    return reconstruction_errors(ConvAE, t, seed, epochs, batch, lr=1e-3)


def baselines(t: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    flat = t.reshape(len(t), -1)
    return {"IsolationForest pixels": iforest(flat, seed), "IsolationForest features": iforest(image_features(t), seed),
            "PCA recon error": pca_error(flat, seed), "conv autoencoder": conv_ae(t, seed)}


# ---- metrics ---------------------------------------------------------------------------------------
def metrics(score: np.ndarray, kind: pd.Series) -> dict:
    """AUROC, AP, precision@k and recall@k per anomaly type; ``kind`` is '' for normal frames."""
    y = (kind != "").to_numpy()
    k = int(y.sum())
    top = np.argsort(-score, kind="stable")[:k]
    in_top = np.zeros(len(y), bool)
    in_top[top] = True
    out = {"auroc": roc_auc_score(y, score), "ap": average_precision_score(y, score), "p_at_k": y[top].mean(), "k": k}
    for t in sorted(set(kind) - {""}):
        m = (kind == t).to_numpy()
        out[f"recall@k {t}"] = in_top[m].mean()
    return out


def evaluate(name: str, results: Path, truth: pd.DataFrame, select, seed: int) -> list[dict]:
    """cnnpipe's and the baselines' metrics on the frames of one set (``select``: source -> bool)."""
    frames = pd.read_csv(results / "anomalies_by_frame.csv", dtype={"key": str})
    frames = frames[frames.source.map(select)].reset_index(drop=True)
    truth = truth.astype({"key": str})
    kind = frames.merge(truth, on=FRAME_ID, how="left").anomaly.fillna("")
    if (kind != "").sum() != len(truth[truth.source.map(select)]):
        raise SystemExit(f"{name}: truth rows not all found among cnnpipe's frames")
    rows = [{"set": name, "method": "cnnpipe", **metrics(frames.score.to_numpy(), kind)}]
    man, tiles = load_tiles(results)
    keep = man.source.map(select).to_numpy()
    man, tiles = man[keep].reset_index(drop=True), tiles[keep]
    for method, s in baselines(tiles, seed).items():
        per_frame = man.assign(s=s).groupby(FRAME_ID).s.max().reset_index()
        per_frame["key"] = per_frame.key.astype(str)
        joined = frames[FRAME_ID].merge(per_frame, on=FRAME_ID, how="left")
        rows.append({"set": name, "method": method, **metrics(joined.s.to_numpy(), kind)})
    return rows


def print_table(rows: list[dict]) -> None:
    for name in dict.fromkeys(r["set"] for r in rows):
        part = [r for r in rows if r["set"] == name]
        types = [c for c in part[0] if c.startswith("recall@k")]
        print(f"\n{name} ({len(types)} anomaly types, k = {part[0]['k']} anomalies)")
        head = f"  {'method':<26} {'AUROC':>6} {'AP':>6} {'P@k':>6}  " + "  ".join(t.split(' ', 1)[1] for t in types)
        print(head)
        for r in part:
            print(f"  {r['method']:<26} {r['auroc']:6.3f} {r['ap']:6.3f} {r['p_at_k']:6.3f}  "
                  + "  ".join(f"{r[t]:>{len(t.split(' ', 1)[1])}.2f}" for t in types))
        best = max((r for r in part if r["method"] != "cnnpipe"), key=lambda r: r["ap"])
        ours = part[0]["ap"]
        verdict = "above" if ours > best["ap"] else "NOT above"
        print(f"  -> cnnpipe AP {ours:.3f} vs best baseline {best['method']} {best['ap']:.3f}: {verdict} "
              f"({ours / max(best['ap'], 1e-9):.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sky", type=int, default=320)
    ap.add_argument("--tracks", type=int, default=320)
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--digit", type=int, default=7, help="the digit class used as the anomaly")
    ap.add_argument("--digits-normal", type=int, default=600)
    ap.add_argument("--digits-anomalies", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the run folders here instead of a temporary folder")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep or tmp)
        demo = root / "demo"
        run_workflow(demo, {"inputs": ["results/demo/sky", "results/demo/tracks.h5"], "seed": a.seed,
                            "demo": {"sky_frames": a.sky, "track_frames": a.tracks, "anomaly_fraction": a.fraction}})
        truth = pd.read_csv(demo / "results" / "demo" / "truth.csv", dtype={"key": str})
        rows += evaluate("sky frames (demo, injected artefacts)", demo / "results", truth,
                         lambda s: s.startswith("results/demo/sky"), a.seed)
        rows += evaluate("detector tracks (demo, odd topologies)", demo / "results", truth,
                         lambda s: s.endswith("tracks.h5"), a.seed)
        dig = root / "digits"
        dig.mkdir(parents=True, exist_ok=True)
        dtruth = write_digits(dig / "digits.h5", a.digit, a.digits_anomalies, a.digits_normal, a.seed)
        dtruth["source"] = "digits.h5"
        run_workflow(dig, {"inputs": ["digits.h5"], "seed": a.seed,
                           "augment": {"hflip": False, "vflip": False, "rot90": False, "translate": 4}})
        rows += evaluate(f"digits (class {a.digit} = anomaly, rot90/flips off)", dig / "results", dtruth,
                         lambda s: s == "digits.h5", a.seed)
    print_table(rows)
    print(json.dumps(rows, default=float))


if __name__ == "__main__":
    main()
