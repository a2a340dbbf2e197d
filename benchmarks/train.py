"""Training samples/s of cnnpipe's loop vs a bare hand-written torch loop, same model, batch and data, same run.

cnnpipe: ``cnnpipe.train.train`` streaming a features shard (HDF5 in the page cache) through its shuffle
buffer, with AdamW + cosine schedule, metrics and a checkpoint every epoch; augmentation off so both loops
do the same arithmetic (a second line reports the default augmentation). Baseline: the tensors in memory,
``randperm`` batches, forward / backward / AdamW step / scheduler step, nothing else. Goal: >= 0.9x.
Rates are the best epoch (epoch 1 excluded) in samples per second of *process CPU time* (the pipeline
records ``cpu_seconds`` per epoch): on a shared machine wall time mostly measures the neighbours' load,
CPU time the work each loop does. ``--clock wall`` uses wall time instead. Runs are interleaved.

Also: the model's achieved GFLOP/s (FLOPs of one training step counted by ``torch.utils.flop_counter``,
times steps/s) against a plain fp32 2048^3 matrix multiply on the same machine.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from common import best_of, report
from cnnpipe.config import parse
from cnnpipe.models import build
from cnnpipe.pixel_outliers import STATS
from cnnpipe.models.vae import vae_loss
from cnnpipe.train import model_config, train


def write_shard(d: Path, x: np.ndarray) -> tuple[list[str], Path]:
    with h5py.File(d / "shard-0.h5", "w") as f:
        f["features"] = x
        f["valid"] = np.ones((len(x), *x.shape[2:]), np.float32)
        for stat in STATS:
            f[stat] = np.zeros(len(x), np.float32)
        f["label"] = np.full(len(x), -1, np.int64)
    pd.DataFrame({"source": "bench.h5", "key": "/x", "index": np.arange(len(x)), "shard": 0,
                  "row": np.arange(len(x)), "status": "ok", "frame": np.arange(len(x))}).to_csv(
        d / "manifest.csv", index=False)
    return [str(d / "shard-0.h5")], d / "manifest.csv"


def step_fn(model, opt, sched, beta):
    def step(x, valid):
        recon, mu, logvar = model(x)
        loss, _ = vae_loss(x, recon, valid, mu, logvar, beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return step


def bare_loop(cfg, x: torch.Tensor, epochs: int, clock: str) -> float:
    """Best samples/s over epochs 2.. of the hand-written loop (per CPU second or per wall second)."""
    torch.manual_seed(0)
    model = build(model_config(cfg, "vae", tuple(x.shape[1:])))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    bs = cfg.train.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * -(-len(x) // bs))
    step = step_fn(model, opt, sched, cfg.train.vae.beta)
    valid = torch.ones(len(x), *x.shape[2:])
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter() if clock == "wall" else time.process_time()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            step(x[idx], valid[idx])
        rates.append(len(x) / ((time.perf_counter() if clock == "wall" else time.process_time()) - t0))
    return max(rates[1:])


def pipeline_loop(cfg, feats, man, d: Path, threads: int, clock: str) -> float:
    train(cfg, "vae", feats, man, d / "vae.pt", d / "m.csv", threads=threads)
    m = pd.read_csv(d / "m.csv").iloc[1:]
    if clock == "cpu":  # samples_per_s is samples / wall seconds; the same samples over CPU seconds
        return float((m["samples_per_s"] * m["seconds"] / m["cpu_seconds"]).max())
    return float(m["samples_per_s"].max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = {"device": "cpu", "train": {"val_fraction": 0.0, "patience": 100, "vae": {"epochs": a.epochs}}}
    off = {"augment": {"hflip": False, "vflip": False, "rot90": False, "translate": 0}}
    cfg = parse({**base, **off})
    cfg_aug = parse(base)
    size = cfg.feature_size
    x = np.random.default_rng(0).random((a.samples, cfg.channels, size, size), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        feats, man = write_shard(d, x)
        xt = torch.from_numpy(x)
        ours, bare, ours_aug = [], [], []
        for _ in range(a.rounds):  # the augmented loop too, in every round: one run of it alone was noisy
            ours.append(pipeline_loop(cfg, feats, man, d, a.threads, a.clock))
            bare.append(bare_loop(cfg, xt, a.epochs, a.clock))
            ours_aug.append(pipeline_loop(cfg_aug, feats, man, d, a.threads, a.clock))
    print(f"VAE {cfg.channels}x{size}x{size}, channels {cfg.train.vae.channels}, batch {cfg.train.batch_size}, "
          f"{a.samples} samples, {a.threads} threads, {a.clock} clock")
    report("train loop (VAE, no augmentation)", max(ours), max(bare), "samples/s", 0.9)
    report("train loop (VAE, default augment)", max(ours_aug), max(bare), "samples/s", 0.9)

    # achieved GFLOP/s of the model vs a plain fp32 matmul
    model = build(model_config(cfg, "vae", tuple(x.shape[1:])))
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    bs = cfg.train.batch_size
    xb, vb = torch.from_numpy(x[:bs]), torch.ones(bs, size, size)
    step = step_fn(model, opt, sched, 1.0)
    with FlopCounterMode(display=False) as fc:
        step(xb, vb)
    flops_per_sample = fc.get_total_flops() / bs
    model_gflops = flops_per_sample * max(ours) / 1e9
    n = 2048
    m1, m2 = torch.rand(n, n), torch.rand(n, n)
    if a.clock == "cpu":
        c0 = time.process_time()
        for _ in range(5):
            m1 @ m2
        mm = 5 * 2 * n ** 3 / (time.process_time() - c0) / 1e9  # per CPU-second, like the model rate
    else:
        mm = 2 * n ** 3 / best_of(lambda: m1 @ m2, 5) / 1e9
    unit = "GFLOP per CPU-second" if a.clock == "cpu" else "GFLOP/s"
    print(f"model: {flops_per_sample / 1e6:.1f} MFLOP per training sample -> {model_gflops:.1f} {unit} achieved; "
          f"fp32 {n}^3 matmul: {mm:.1f} {unit}; model/matmul {model_gflops / mm:.2f}")
    print(json.dumps({"ours": ours, "bare": bare, "ours_augment": ours_aug, "model_gflops": model_gflops,
                      "matmul_gflops": mm}))


if __name__ == "__main__":
    main()
