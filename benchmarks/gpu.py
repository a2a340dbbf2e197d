"""Training and scoring rates on CUDA (bf16 autocast, the pipeline's ``train.amp``) against the CPU of the
same machine, one script, one process. Not part of ``make bench``: run it where a GPU is.

For each device (``cuda`` when present, then ``cpu`` with ``--cpu-threads``):
- ``cnnpipe.train.train`` of the VAE and of the self-supervised CNN (every symmetry off, so the CNN predicts
  the 8 rotations/flips) on a features shard of random tiles, ``--steps`` optimiser steps each: samples/s of
  the best epoch after the first (the loop streams the HDF5 shard through its shuffle buffer, as in a run);
- ``cnnpipe.score.score_shard`` with the default components and with every component: frames/s, next to a
  bare forward pass of the VAE (and VAE + CNN) over the same tiles already on the device.
Prints one line per figure and the whole result as JSON (``--out``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import best_of
from score import tiles_and_reference
from train import write_shard
from cnnpipe import components
from cnnpipe.augment import apply, pretext_transforms
from cnnpipe.config import parse
from cnnpipe.models import build
from cnnpipe.runtime import autocast
from cnnpipe.score import score_shard
from cnnpipe.train import model_config, train as cnnpipe_train

OFF = {"hflip": False, "vflip": False, "rot90": False, "translate": 0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_rate(d: Path, device: str, kind: str, feats: list[str], man: Path, steps: int, epochs: int) -> dict:
    """Best samples/s over epochs 2.. of cnnpipe's training loop, and the wall time of the whole call."""
    cfg = parse({"device": device, "augment": OFF,
                 "train": {"val_fraction": 0.05, "patience": 100,
                           kind: {"epochs": epochs, "max_steps": steps}}})
    t0 = time.perf_counter()
    cnnpipe_train(cfg, kind, feats, man, d / f"{kind}.pt", d / f"{kind}.csv")
    wall = time.perf_counter() - t0
    m = pd.read_csv(d / f"{kind}.csv")
    return {"samples_per_s": float(m["samples_per_s"].iloc[1:].max()), "wall_s": wall, "epochs": len(m)}


def score_rates(d: Path, device: torch.device, feats: list[str], man_path: Path, x: np.ndarray,
                batch: int) -> dict:
    cfg = parse({"device": device.type, "augment": OFF})
    shape = x.shape[1:]
    transforms = pretext_transforms(cfg.augment)
    torch.manual_seed(0)
    vae = build(model_config(cfg, "vae", shape)).to(device).eval()
    cnn = build(model_config(cfg, "cnn", shape, n_classes=len(transforms))).to(device).eval()
    meta = {"kind": "cnn", "mode": "self-supervised", "transforms": [[t.k, int(t.flip), t.dy, t.dx] for t in transforms]}
    s = cfg.score
    frames, man, reference = tiles_and_reference(d, cfg, man_path, len(x), device)
    xt = torch.from_numpy(x).to(device)

    @torch.no_grad()
    def bare(with_cnn: bool, amp: bool):
        with autocast(device, amp):
            for i in range(0, len(xt), batch):
                b = xt[i:i + batch]
                vae(b)
                if with_cnn:
                    for t in transforms:
                        cnn(apply(b, t))
        sync(device)

    def ours(comps, size=batch, oriented=False):
        def run():
            score_shard(feats[0], frames, man, 0, vae, cnn, meta, reference, device,
                        dataclasses.replace(s, batch_size=size), comps=comps, with_cnn_features=oriented,
                        layout_side=s.layout_side if oriented else 0)
            sync(device)
        return run

    # the default config declares the data isotropic: no CNN; with an orientation left (digits, tracks)
    # the CNN's score, its features (for cnn_knn) and the thumbnails (for layout_knn), gathered at rank,
    # come in
    default = [c for c in components.per_shard(s.weights) if c.name != "cnn"]
    fns = {"score_default": ours(default), "score_every": ours(components.per_shard()),
           "score_with_cnn": ours(components.per_shard(s.weights), oriented=True),
           "bare_vae": lambda: bare(False, False), "bare_vae_amp": lambda: bare(False, True),
           "bare_vae_cnn": lambda: bare(True, False), f"score_default_batch{8 * batch}": ours(default, 8 * batch)}
    out = {}
    for name, fn in fns.items():
        fn()  # warm-up (cuDNN autotune, caches)
        out[name] = len(x) / best_of(fn, 2)
    # where the default scoring's time goes: each component alone
    for c in default:
        fn = ours([c])
        fn()
        out[f"only_{c.name}"] = len(x) / best_of(fn, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=16384, help="tiles in the shard (training and scoring)")
    ap.add_argument("--steps", type=int, default=400, help="optimiser steps per training run")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256, help="scoring batch")
    ap.add_argument("--cpu-threads", type=int, default=0, help="0 = every core")
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--commit", default=None, help="the commit measured (default: git's HEAD, where there is a .git)")
    ap.add_argument("--out", default=None, help="the results as JSON")
    ap.add_argument("--md", default=None, help="the results as a markdown page (benchmarks/GPU.md)")
    a = ap.parse_args()
    if a.cpu_threads:
        torch.set_num_threads(a.cpu_threads)
    cfg = parse({})
    x = np.random.default_rng(0).random((a.samples, cfg.channels, cfg.feature_size, cfg.feature_size),
                                        dtype=np.float32)
    result = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "samples": a.samples,
              "steps": a.steps, "tile_features": list(x.shape[1:]), "batch": a.batch,
              "commit": a.commit or _git_head()}
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name(0)
    devices = [dv for dv in a.devices.split(",") if dv != "cuda" or torch.cuda.is_available()]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        feats, man = write_shard(d, x)
        for dv in devices:
            r = {}
            for kind in ("vae", "cnn"):
                r[f"train_{kind}"] = train_rate(d, dv, kind, feats, man, a.steps, a.epochs)
                print(f"{dv:5} train {kind}: {r[f'train_{kind}']['samples_per_s']:10.0f} samples/s "
                      f"({r[f'train_{kind}']['wall_s']:.1f} s for {a.steps} steps)", flush=True)
            r["score"] = score_rates(d, torch.device(dv), feats, man, x, a.batch)
            for k, v in r["score"].items():
                print(f"{dv:5} {k:<22} {v:10.0f} frames/s", flush=True)
            result[dv] = r
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    if a.md:
        Path(a.md).write_text(page(result, devices))


def _git_head() -> str:
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def page(r: dict, devices: list[str]) -> str:
    """benchmarks/GPU.md: the figures of one run as a table, devices side by side."""
    rows = [("train VAE (samples/s)", lambda d: d["train_vae"]["samples_per_s"]),
            ("train CNN, 8 pretext classes (samples/s)", lambda d: d["train_cnn"]["samples_per_s"]),
            ("score a shard, default components (frames/s)", lambda d: d["score"]["score_default"]),
            (f"default components, scoring batch {8 * r['batch']} (frames/s)", lambda d: d["score"][f"score_default_batch{8 * r['batch']}"]),
            ("score a shard, every component (frames/s)", lambda d: d["score"]["score_every"]),
            ("score a shard, defaults with the CNN, its features and the thumbnails (frames/s)", lambda d: d["score"]["score_with_cnn"]),
            ("bare VAE forward, fp32 (frames/s)", lambda d: d["score"]["bare_vae"]),
            ("bare VAE forward, autocast (frames/s)", lambda d: d["score"]["bare_vae_amp"]),
            ("bare VAE + 8 CNN forwards (frames/s)", lambda d: d["score"]["bare_vae_cnn"]),
            *[(f"score with only `{k[5:]}` (frames/s)", lambda d, k=k: d["score"][k])
              for k in r[devices[0]]["score"] if k.startswith("only_")]]
    out = ["# Training and scoring on a GPU\n",
           f"Written by `python benchmarks/gpu.py` at commit {r['commit']}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
           f"torch {r['torch']}, GPU {r.get('gpu', 'none')}, CPU figures with {r['cpu_threads']} threads on the same "
           f"machine. {r['samples']} random tiles {r['tile_features']}, {r['steps']} optimiser steps per training run "
           f"(batch 64, best epoch after the first), scoring batch {r['batch']}; mixed precision (`train.amp`) on CUDA.\n",
           "| figure | " + " | ".join(devices) + (" | ratio |" if len(devices) == 2 else " |"),
           "|---|" + "---|" * (len(devices) + (len(devices) == 2))]
    for name, get in rows:
        vals = [get(r[d]) for d in devices]
        ratio = f" {vals[0] / vals[1]:.1f}x |" if len(vals) == 2 else ""
        out.append(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in vals) + f" |{ratio}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
