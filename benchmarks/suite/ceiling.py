"""How separable is one anomaly class from its family's normal frames *with* labels? A supervised ceiling.

cnnpipe never sees labels. When a class stays below the suite's per-class target (recall >= 0.8 in the
top 2k), this asks whether any detector could reach it: a small CNN is trained on thousands of labelled
frames of that class and of normal ones (fresh draws of the family's own simulator, seeds that no suite set
uses, with rotations and mirror images), and tested on other fresh frames. Printed per epoch: the test
AUROC and the recall at 5% false positives, the operating point of the target: the top 2k of a suite set
holds about 10% of its frames, half of them taken by the other anomalies.

If labelled training on ten times the suite's whole set leaves a class near chance, no unsupervised score
will put 80% of it in the top 2k. A class the CNN learns at once is a gap in cnnpipe's scores instead.

Run from the repository root (minutes to an hour on 2 cores; not part of the suite or the tests):
``python -m benchmarks.suite.ceiling tracks_helix kink --train 12000 --epochs 16``
"""
from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score

TRAIN_SEED, TEST_SEED = 9001, 9002     # no suite set uses them (split.py)


def draw(family: str, cls: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` frames, alternately normal and of class ``cls``, each scaled by its own spread (asinh), and
    their labels (1 = ``cls``). A family whose module has ``event`` draws one frame at a time; otherwise its
    ``generate`` is called with half the frames anomalous and the frames of ``cls`` are kept."""
    mod = importlib.import_module(f"benchmarks.suite.{family}")
    if hasattr(mod, "event"):
        rng = np.random.default_rng(seed)
        frames = np.stack([mod.event(rng, cls if i % 2 else "normal")[0] for i in range(n)])
        labels = np.arange(n) % 2
    else:
        k = len(mod.CLASSES)
        frames, truth = mod.generate(n * k, 0.5, seed)
        c = truth.cls.to_numpy()
        keep = np.concatenate([np.nonzero(c == cls)[0], np.nonzero(c == "normal")[0][:n // 2]])
        frames, labels = frames[keep], (c[keep] == cls).astype(int)
    med = np.median(frames, axis=(1, 2), keepdims=True)
    spread = frames.std(axis=(1, 2), keepdims=True) + 1e-6
    x = np.arcsinh((frames - med) / spread).astype(np.float32)
    return torch.from_numpy(x[:, None]), torch.from_numpy(labels.astype(np.float32))


def block(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout), nn.ReLU()]


def classifier() -> nn.Module:
    """Five 3x3 conv layers (two dilated) at full and half resolution, max over the frame: a local
    defect anywhere counts, as in a detector of kinks or vertices."""
    return nn.Sequential(*block(1, 32), *block(32, 32), *block(32, 64, 2), nn.MaxPool2d(2), *block(64, 64),
                         *block(64, 64, 2), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 1))


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Test AUROC and recall at a 5% false-positive rate."""
    net.eval()
    with torch.no_grad():
        s = torch.cat([net(x[i:i + 500]).squeeze(1) for i in range(0, len(x), 500)]).numpy()
    y = y.numpy().astype(bool)
    return float(roc_auc_score(y, s)), float(np.mean(s[y] > np.quantile(s[~y], 0.95)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", help="a suite family with a simulator (tracks_helix, tracks_strips, sky_m13, ...)")
    ap.add_argument("cls", help="the anomaly class (kink, two_prong, ghost_ring, ...)")
    ap.add_argument("--train", type=int, default=12000, help="training frames, half of them of the class")
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    xtr, ytr = draw(a.family, a.cls, a.train, TRAIN_SEED)
    xte, yte = draw(a.family, a.cls, a.test, TEST_SEED)
    net = classifier()
    steps = (len(xtr) + 63) // 64
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=a.epochs * steps)
    start = time.time()
    for epoch in range(a.epochs):
        net.train()
        for b in torch.randperm(len(xtr)).split(64):
            x = xtr[b]
            x = x.flip(-1) if torch.rand(1) < 0.5 else x
            x = x.transpose(-1, -2) if torch.rand(1) < 0.5 else x
            loss = nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        auroc, recall = evaluate(net, xte, yte)
        print(f"{a.family} {a.cls} epoch {epoch + 1}: test AUROC {auroc:.3f}, recall at 5% false positives "
              f"{recall:.2f} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
