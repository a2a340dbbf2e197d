"""Frames/s of cnnpipe's per-shard scoring vs a bare forward pass of the same VAE + CNN, same run.

cnnpipe: ``cnnpipe.score.score_shard`` on a features shard (HDF5 in the page cache): batched reads, the
VAE forward, masked worst-fraction residuals in intensity and Sobel, KL, the self-supervised CNN score
(one CNN forward per allowed transform), latent means, the result table. Baseline: the same two models'
forward passes (VAE once, CNN once per transform) on the same features already in memory, nothing else.
The models are freshly initialised (weights do not change the arithmetic). Goal: >= 0.8x.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from common import best_of, report
from train import write_shard
from cnnpipe.augment import allowed_transforms, apply
from cnnpipe.config import parse
from cnnpipe.ingest import read_csv
from cnnpipe.models import build
from cnnpipe.score import score_shard
from cnnpipe.train import model_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = parse({"device": "cpu"})
    size, shape = cfg.feature_size, (cfg.channels, cfg.feature_size, cfg.feature_size)
    x = np.random.default_rng(0).random((a.samples, *shape), dtype=np.float32)
    transforms = allowed_transforms(cfg.augment)
    torch.manual_seed(0)
    vae = build(model_config(cfg, "vae", shape)).eval()
    cnn = build(model_config(cfg, "cnn", shape, n_classes=len(transforms))).eval()
    meta = {"kind": "cnn", "mode": "self-supervised", "transforms": [[t.k, int(t.flip), t.dy, t.dx] for t in transforms]}
    xt = torch.from_numpy(x)

    @torch.no_grad()
    def bare():
        for i in range(0, len(xt), a.batch):
            b = xt[i:i + a.batch]
            vae(b)
            for t in transforms:
                cnn(apply(b, t))

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        feats, man_path = write_shard(Path(tmp), x)
        man = read_csv(man_path).assign(y0=0, x0=0)
        ours = lambda: score_shard(feats[0], man, 0, vae, cnn, meta, torch.device("cpu"),  # noqa: E731
                                   cfg.score.top_fraction, a.batch)
        assert len(ours()) == a.samples
        t_ours, t_bare = [], []
        for _ in range(2):  # interleaved, so the other users' load hits both
            t_ours.append(best_of(ours, 2))
            t_bare.append(best_of(bare, 2))
    print(f"VAE {cfg.train.vae.channels} + CNN {cfg.train.cnn.channels} ({len(transforms)} transforms) on "
          f"{a.samples} frames {shape}, batch {a.batch}, {a.threads} threads")
    report("score shard vs bare forward", a.samples / min(t_ours), a.samples / min(t_bare), "frames/s", 0.8)


if __name__ == "__main__":
    main()
