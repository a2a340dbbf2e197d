"""One plain training loop for the CNN and the VAE.

Data: ``ShardStream`` streams the features shards (HDF5, written by ``preprocess``) in chunks through a
shuffle buffer of ``cfg.train.shuffle_buffer`` frames, so memory is bounded by the buffer, never by the
data set. Rows are split into train/val by a hash of the frame id ``(source, key, frame)`` from the
manifest: every tile of a frame lands on the same side, and the split does not depend on shard layout.

Loop: AdamW, cosine learning-rate schedule over all steps, early stopping on the validation loss
(``cfg.train.patience``), seeds for determinism on CPU, mixed precision on CUDA only. After every epoch
a checkpoint (weights, optimizer, scheduler, every RNG state including the data order) is written to a
temporary file and renamed; ``resume=True`` continues from it and ends with the same weights as an
uninterrupted run. Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel
(gloo on CPU, nccl on CUDA) and each rank streams a disjoint subset of the rows.

Modes: the VAE learns to reconstruct (``vae_loss``). The CNN is supervised when labels exist (features
shard ``label`` >= 0, or ``cfg.train.cnn.labels_csv``), else self-supervised: it predicts which allowed
transform (``augment.allowed_transforms``) was applied (Golan & El-Yaniv 2018).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import IterableDataset

from . import __version__
from .atomic import atomic_path
from .augment import Transform, allowed_transforms, apply, random_augment
from .checkpoint import check_model_config, expected_config
from .checkpoint import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .config import Config
from .csvcells import restore
from .device import select
from .errors import UserError
from .models import build
from .models.vae import pixel_residual_scale, vae_loss
from .shards import shard_number

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- data

@dataclass
class Part:
    """The rows of one features shard that a stream reads, with their class targets (-1 = none)."""
    path: str
    rows: np.ndarray      # sorted row numbers
    targets: np.ndarray   # same length


def frame_fraction(source: str, key: str, frame: int) -> float:
    """A stable number in [0, 1) from a frame id: rows with a value < val_fraction are validation."""
    h = hashlib.blake2b(f"{source}\0{key}\0{frame}".encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(h.digest(), "big") / 2.0 ** 64


def shard_rows(manifest: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The ok manifest rows stored in features shard ``path``, ordered by row; checks the count."""
    i = shard_number(path)
    rows = manifest[(manifest["shard"] == i) & (manifest["status"] == "ok")].sort_values("row")
    with h5py.File(path, "r") as f:
        n = f["features"].shape[0]
    if len(rows) != n or (n and not np.array_equal(rows["row"].to_numpy(), np.arange(n))):
        raise UserError(f"{path} has {n} rows but the manifest lists {len(rows)} ok rows for shard {i}; "
                        "rerun ingest/preprocess so they agree")
    return rows


def read_manifest(path: str | Path) -> pd.DataFrame:
    return restore(pd.read_csv(path, dtype={"source": str, "key": str}, keep_default_na=False,
                               usecols=["source", "key", "index", "shard", "row", "status", "frame"]))


@dataclass
class DataPlan:
    train: list[Part]
    val: list[Part]
    classes: list            # class values (supervised), [] otherwise
    shape: tuple[int, ...]   # (C, H, W) of a features row


def plan_data(features: list[str], manifest_path: str | Path, val_fraction: float,
              labels_csv: str | None = None, use_labels: bool = False, rank: int = 0, world: int = 1) -> DataPlan:
    """Split every shard's rows into train/val by frame id and attach class targets when labelled.

    Reads only manifest columns and the per-row ``label`` datasets, never the features. With ``world`` > 1
    rank ``r`` keeps every ``world``-th row starting at ``r`` (disjoint subsets).
    """
    if not features:
        raise UserError("no features shards given")
    manifest = read_manifest(manifest_path)
    csv_labels = None
    if use_labels and labels_csv:
        if not Path(labels_csv).is_file():
            raise UserError(f"train.cnn.labels_csv: {labels_csv} does not exist")
        lab = pd.read_csv(labels_csv, dtype={"source": str, "key": str}, keep_default_na=False)
        missing = {"source", "key", "index", "label"} - set(lab.columns)
        if missing:
            raise UserError(f"{labels_csv} lacks column(s) {', '.join(sorted(missing))} (need source,key,index,label)")
        csv_labels = {(s, k, int(i)): v for s, k, i, v in zip(lab["source"], lab["key"], lab["index"], lab["label"])}
    per_shard, raw_labels, shape = [], [], None
    for path in features:
        rows = shard_rows(manifest, path)
        with h5py.File(path, "r") as f:
            shape = shape or tuple(f["features"].shape[1:])
            if tuple(f["features"].shape[1:]) != shape:
                raise UserError(f"{path} has rows of shape {f['features'].shape[1:]}, other shards {shape}")
            labels = f["label"][:] if "label" in f else np.full(len(rows), -1)
        if csv_labels is not None:
            labels = [csv_labels.get((s, k, int(i)), None)
                      for s, k, i in zip(rows["source"], rows["key"], rows["index"])]
        elif not use_labels:
            labels = np.full(len(rows), -1)
        else:
            labels = [int(v) if v >= 0 else None for v in labels]
        val = np.array([frame_fraction(s, k, int(fr)) < val_fraction
                        for s, k, fr in zip(rows["source"], rows["key"], rows["frame"])], dtype=bool)
        per_shard.append((path, val))
        raw_labels.append(labels)
    if shape is None:
        raise UserError("the features shards are empty")
    classes = sorted({v for labels in raw_labels for v in labels if v is not None}) if use_labels else []
    index = {c: i for i, c in enumerate(classes)}
    train, valp = [], []
    for (path, val), labels in zip(per_shard, raw_labels):
        target = np.array([index.get(v, -1) if v is not None else -1 for v in labels], dtype=np.int64)
        keep = np.arange(len(val)) % world == rank
        if classes:
            keep &= target >= 0  # supervised: unlabelled rows are skipped
        for out, side in ((train, ~val), (valp, val)):
            rows = np.flatnonzero(keep & side)
            out.append(Part(str(path), rows, target[rows]))
    return DataPlan(train, valp, classes, shape)


class ShardStream(IterableDataset):
    """Batches ``{"x": (B,C,H,W), "valid": (B,H,W), "y": (B,)}`` streamed from HDF5 shards.

    With ``shuffle`` the shard order and the chunk order within a shard are permuted and rows pass through
    a buffer of ``buffer`` frames (each row entering swaps out a random buffered one), seeded per epoch by
    ``set_seed`` so the order is reproducible. Without shuffle, rows come in file order. Memory: the buffer
    plus one chunk.
    """

    def __init__(self, parts: list[Part], batch: int, buffer: int = 2048, shuffle: bool = True,
                 chunk: int = 256):
        super().__init__()
        self.parts = [p for p in parts if len(p.rows)]
        self.batch, self.buffer, self.shuffle, self.chunk = batch, max(1, buffer), shuffle, chunk
        self.seed = 0

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    @property
    def n_rows(self) -> int:
        return sum(len(p.rows) for p in self.parts)

    def __len__(self) -> int:
        return math.ceil(self.n_rows / self.batch)

    def _chunks(self, rng: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        order = rng.permutation(len(self.parts)) if rng is not None else range(len(self.parts))
        for p_i in order:
            part = self.parts[p_i]
            groups = np.split(part.rows, np.flatnonzero(np.diff(part.rows // self.chunk)) + 1)
            g_order = rng.permutation(len(groups)) if rng is not None else range(len(groups))
            with h5py.File(part.path, "r") as f:
                for g in g_order:
                    rows = groups[g]
                    lo, hi = int(rows[0]), int(rows[-1]) + 1
                    x = np.nan_to_num(f["features"][lo:hi][rows - lo])
                    v = f["valid"][lo:hi][rows - lo]
                    yield x, v, part.targets[np.searchsorted(part.rows, rows)]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng(self.seed) if self.shuffle else None
        cap = min(self.buffer, self.n_rows) if self.shuffle else 0
        buf: list[np.ndarray] | None = None
        out: list[np.ndarray] | None = None
        m = o = 0
        for x, v, y in self._chunks(rng):
            if buf is None:
                buf = [np.empty((cap, *a.shape[1:]), a.dtype) for a in (x, v, y)]
                out = [np.empty((self.batch, *a.shape[1:]), a.dtype) for a in (x, v, y)]
            for i in range(len(x)):
                if m < cap:                              # filling the buffer
                    for b, a in zip(buf, (x, v, y)):
                        b[m] = a[i]
                    m += 1
                    continue
                if cap:                                  # swap a random buffered row out, the new row in
                    j = int(rng.integers(cap))
                    for b, a, q in zip(buf, (x, v, y), out):
                        q[o] = b[j]
                        b[j] = a[i]
                else:
                    for a, q in zip((x, v, y), out):
                        q[o] = a[i]
                o += 1
                if o == self.batch:
                    yield self._tensors(out, o)
                    o = 0
        if buf is not None:
            for j in (rng.permutation(m) if m else []):  # drain the buffer in random order
                for b, q in zip(buf, out):
                    q[o] = b[j]
                o += 1
                if o == self.batch:
                    yield self._tensors(out, o)
                    o = 0
            if o:
                yield self._tensors(out, o)

    @staticmethod
    def _tensors(out: list[np.ndarray], n: int) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(a[:n].copy()) for k, a in zip(("x", "valid", "y"), out)}


# ---------------------------------------------------------------------------------------------- model

def model_config(cfg: Config, kind: str, shape: tuple[int, ...], n_classes: int = 0) -> dict:
    """The plain-dict model config stored in the checkpoint (architecture only)."""
    c, h, w = shape
    if h != w:
        raise UserError(f"features are {h}x{w}; the models need square maps")
    exp = expected_config(cfg, kind)
    if (c, h) != (exp["in_channels"], exp["size"]):
        raise UserError(f"features shards hold {c}x{h}x{w} maps but the config gives {exp['in_channels']} "
                        f"channels of {exp['size']}x{exp['size']}; rerun preprocess with this config")
    return dict(exp, n_classes=n_classes) if kind == "cnn" else exp


class Task:
    """What differs between the models: the loss of a training batch and the metrics of a val batch."""

    def __init__(self, cfg: Config, kind: str, classes: list):
        self.cfg, self.kind = cfg, kind
        self.mode = "vae" if kind == "vae" else ("supervised" if classes else "self-supervised")
        self.transforms = allowed_transforms(cfg.augment) if self.mode == "self-supervised" else []
        if self.mode == "self-supervised" and len(self.transforms) < 2:
            raise UserError("the self-supervised CNN needs at least one allowed transform besides identity: "
                            "allow a flip, rot90 or translate > 0 in 'augment', or give labels")
        self.n_classes = len(classes) if classes else len(self.transforms)
        self.terms = ["recon", "recon_sobel", "kl"] if kind == "vae" else ["accuracy"]
        aug = cfg.augment
        self.augments = aug.hflip or aug.vflip or aug.rot90 or aug.translate > 0
        self.kl_scale = 1.0  # training KL weight = beta * kl_scale (set per step during the KL warm-up)

    def set_progress(self, epochs_done: float) -> None:
        """KL warm-up: the training KL weight rises linearly to beta over ``kl_warmup_epochs``."""
        warmup = self.cfg.train.vae.kl_warmup_epochs
        self.kl_scale = min(1.0, epochs_done / warmup) if warmup > 0 else 1.0

    def train_loss(self, model: nn.Module, b: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        x, valid, y = b["x"], b["valid"], b["y"]
        if self.kind == "vae":
            if self.augments:  # the valid map moves with the frame
                xv = random_augment(torch.cat([x, valid[:, None]], 1), self.cfg.augment, gen)
                x, valid = xv[:, :-1], xv[:, -1]
            recon, mu, logvar = model(x)
            return vae_loss(x, recon, valid, mu, logvar, self.cfg.train.vae.beta * self.kl_scale)
        if self.mode == "supervised":
            if self.augments:
                x = random_augment(x, self.cfg.augment, gen)
        else:  # every frame under every allowed transform, labelled by the transform's index
            x = torch.cat([apply(x, t) for t in self.transforms])
            y = torch.arange(len(self.transforms), device=x.device).repeat_interleave(b["x"].shape[0])
        logits = model(x)
        return F.cross_entropy(logits.float(), y), {"accuracy": (logits.argmax(1) == y).float().mean()}

    @torch.no_grad()
    def val_batch(self, model: nn.Module, b: dict) -> tuple[dict[str, float], int, torch.Tensor | None]:
        """Summed metrics of a val batch, its sample count, and (CNN) (true, predicted) pairs."""
        x, valid, y = b["x"], b["valid"], b["y"]
        if self.kind == "vae":
            recon, mu, logvar = model(x)
            loss, terms = vae_loss(x, recon, valid, mu, logvar, self.cfg.train.vae.beta)
            n = x.shape[0]
            return {"loss": loss.item() * n, **{k: v.item() * n for k, v in terms.items()}}, n, None
        views = [(x, y)] if self.mode == "supervised" else [
            (apply(x, t), torch.full_like(y, k)) for k, t in enumerate(self.transforms)]
        sums, n, pairs = {"loss": 0.0, "accuracy": 0.0}, 0, []
        for xv, yv in views:
            logits = model(xv).float()
            pred = logits.argmax(1)
            sums["loss"] += F.cross_entropy(logits, yv, reduction="sum").item()
            sums["accuracy"] += (pred == yv).sum().item()
            n += len(yv)
            pairs.append(torch.stack([yv, pred], 1))
        return sums, n, torch.cat(pairs)


# ----------------------------------------------------------------------------------------------- loop

def checkpoint_path(out: str | Path) -> Path:
    """Where the per-epoch training checkpoint of ``out`` lives: ``cnn.pt`` -> ``cnn.ckpt.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.ckpt{out.suffix or '.pt'}")


def _rng_state(gen: torch.Generator, order: np.random.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "augment": gen.get_state(),
             "order": json.dumps(order.bit_generator.state)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator, order: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["augment"])
    order.bit_generator.state = json.loads(state["order"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fingerprint(cfg: Config, kind: str) -> str:
    """The settings a resumed run must share with the checkpoint (everything that changes the weights)."""
    train = {k: v for k, v in cfg.raw["train"].items() if k not in ("cnn", "vae")}
    return json.dumps({"seed": cfg.seed, "augment": cfg.raw["augment"], "train": train,
                       kind: cfg.raw["train"][kind]}, sort_keys=True)


def _write_metrics(history: list[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def _progress(total: int, desc: str, enabled: bool):
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
    return None


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def train(cfg: Config, kind: str, features: list[str], manifest: str | Path, out: str | Path,
          metrics: str | Path, resume: bool = False, threads: int | None = None,
          stop_after: int | None = None) -> dict:
    """Train the ``kind`` ("cnn" | "vae") model on the features shards; write ``out``, ``metrics`` (CSV) and
    a summary JSON beside the metrics (``.json``; accuracy + confusion matrix for the CNN).

    ``stop_after``: return after that many epochs as if the run were killed (tests resume from there).
    Returns the summary dict.
    """
    if kind not in ("cnn", "vae"):
        raise ValueError(kind)
    rank, world = _init_distributed()
    device = select(cfg.device, threads)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    main = rank == 0
    tc = cfg.train
    sub = tc.cnn if kind == "cnn" else tc.vae
    plan = plan_data(features, manifest, tc.val_fraction, tc.cnn.labels_csv if kind == "cnn" else None,
                     use_labels=kind == "cnn", rank=rank, world=world)
    if kind == "cnn" and len(plan.classes) == 1:
        log.warning("only one class (%r) is labelled: training the CNN self-supervised", plan.classes[0])
        plan = plan_data(features, manifest, tc.val_fraction, rank=rank, world=world)
    task = Task(cfg, kind, plan.classes)
    mcfg = model_config(cfg, kind, plan.shape, task.n_classes)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build(mcfg).to(device)
    train_stream = ShardStream(plan.train, tc.batch_size, tc.shuffle_buffer, shuffle=True)
    val_stream = ShardStream(plan.val, tc.batch_size, shuffle=False)
    steps = len(train_stream)
    if world > 1:  # every rank must take the same number of steps
        t = torch.tensor([steps], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        steps = int(t.item())
    if steps == 0:
        raise UserError(f"no training rows for the {kind} (all {val_stream.n_rows} went to validation or none "
                        "are labelled); lower train.val_fraction or add data")
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=sub.epochs * steps)
    use_scaler = device.type == "cuda" and tc.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1 + rank)
    order = np.random.default_rng([cfg.seed, 2, rank])
    meta = {"kind": kind, "mode": task.mode,
            "transforms": [[t.k, int(t.flip), t.dy, t.dx] for t in task.transforms],
            "classes": list(plan.classes), "cnnpipe_version": __version__,
            "config": json.loads(json.dumps(cfg.raw)), "feature_shards": [str(p) for p in features]}
    state = {"epoch": 0, "best": math.inf, "best_epoch": -1, "bad": 0, "stopped": False, "history": [],
             "best_state": None}
    ckpt = checkpoint_path(out)
    fingerprint = _fingerprint(cfg, kind)
    if resume and ckpt.is_file():
        ck = load_checkpoint(ckpt)
        check_model_config(ck["model"], mcfg, ckpt)
        if ck.get("fingerprint") != fingerprint:
            raise UserError(f"{ckpt} was written with different training settings; drop --resume to start over")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0], gen, order)
        state = {k: ck["train_state"][k] for k in state if k != "best_state"}
        state["best_state"] = ck["best_state"]
        if main:
            log.info("resuming %s from %s after epoch %d", kind, ckpt, state["epoch"])
    elif resume and main:
        log.info("no checkpoint at %s: starting %s from scratch", ckpt, kind)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    for epoch in range(state["epoch"], sub.epochs):
        if state["stopped"]:
            break
        train_stream.set_seed(int(order.integers(2 ** 63)))
        lr = opt.param_groups[0]["lr"]
        net.train()
        sums, seen, t0, c0 = {}, 0, time.perf_counter(), time.process_time()
        bar = _progress(steps, f"{kind} epoch {epoch + 1}/{sub.epochs}", main)
        for step, b in enumerate(train_stream):
            if step == steps:
                break
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            task.set_progress(epoch + step / steps)
            with _autocast(device, tc.amp):
                loss, terms = task.train_loss(net, b, gen)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            n = b["x"].shape[0]
            seen += n
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.item() * n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4g}")
        if bar is not None:
            bar.close()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        keys = ["loss", *task.terms]
        tot = _all_sum([sums.get(k, 0.0) for k in keys] + [seen, seconds], device)
        seen_all = tot[len(keys)]
        row = {"epoch": epoch + 1, **{f"train_{k}": v / max(seen_all, 1) for k, v in zip(keys, tot)}}
        val = evaluate(net, task, val_stream, device, tc.amp)
        row.update({f"val_{k}": v for k, v in val.items() if k != "pairs"})
        row["lr"] = lr  # at the start of the epoch (the cosine schedule steps every batch)
        row["samples_per_s"] = seen_all / max(seconds, 1e-9)
        row["seconds"] = seconds
        row["cpu_seconds"] = cpu_seconds  # this process's CPU time: robust to other load on a shared machine
        monitor = row["val_loss"] if not math.isnan(row.get("val_loss", math.nan)) else row["train_loss"]
        if kind == "vae" and epoch + 1 < min(sub.kl_warmup_epochs, sub.epochs):
            pass  # still warming up the KL weight: a different objective, not a candidate for the best model
        elif monitor < state["best"]:
            state.update(best=monitor, best_epoch=epoch + 1, bad=0,
                         best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        else:
            state["bad"] += 1
            state["stopped"] = state["bad"] >= tc.patience
        state["history"].append(row)
        state["epoch"] = epoch + 1
        rngs = _gather_rng(_rng_state(gen, order), world)
        if main:
            save_checkpoint(ckpt, model, mcfg, meta, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                            scaler=scaler.state_dict(), rng=rngs, fingerprint=fingerprint,
                            train_state={k: v for k, v in state.items() if k != "best_state"},
                            best_state=state["best_state"])
            _write_metrics(state["history"], metrics)
            log.info("%s epoch %d/%d: %s", kind, epoch + 1, sub.epochs,
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
            if state["stopped"]:
                log.info("%s: early stop, no val improvement for %d epochs", kind, tc.patience)
        if stop_after is not None and epoch + 1 >= stop_after:
            return {"interrupted_after": epoch + 1}

    model.load_state_dict(state["best_state"])
    if kind == "vae":
        model.residual_scale.copy_(pixel_residual_scale(
            model, ShardStream(plan.train, tc.batch_size, shuffle=False), device))
    final = evaluate(model, task, val_stream, device, tc.amp)
    summary = {"kind": kind, "mode": task.mode, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
               "stopped_early": state["stopped"], "n_train": train_stream.n_rows, "n_val": val_stream.n_rows,
               "world_size": world, "device": str(device),
               **{f"val_{k}": v for k, v in final.items() if k != "pairs"}}
    if kind == "cnn":
        labels = plan.classes if plan.classes else [_name(t) for t in task.transforms]
        summary["classes"] = labels
        summary["confusion"] = _confusion(final.get("pairs"), task.n_classes)
    if main:
        meta.update(epoch=state["best_epoch"], epochs_run=state["epoch"],
                    best_val_loss=None if math.isinf(state["best"]) else state["best"])
        save_checkpoint(out, model, mcfg, meta)
        _write_metrics(state["history"], metrics)
        with atomic_path(Path(metrics).with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(summary, indent=1, default=str))
        log.info("%s (%s) saved to %s: best epoch %d, %s", kind, task.mode, out, state["best_epoch"],
                 ", ".join(f"{k}={v:.4g}" for k, v in summary.items() if k.startswith("val_") and v == v))
        if not tc.keep_checkpoint:  # only --resume reads it, and the model is saved
            ckpt.unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    return summary


def _gather_rng(state: dict, world: int) -> list[dict]:
    """Every rank's RNG states (rank order), so a resumed distributed run restores each rank's stream."""
    if world == 1:
        return [state]
    out: list = [None] * world
    dist.all_gather_object(out, state)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, stream: ShardStream, device: torch.device, amp: bool) -> dict:
    """Mean validation metrics over ``stream`` (all ranks summed); NaN when there is no validation data."""
    model.eval()
    keys = ["loss", *task.terms]
    sums, n, pairs = dict.fromkeys(keys, 0.0), 0, []
    for b in stream:
        b = {k: v.to(device) for k, v in b.items()}
        with _autocast(device, amp):
            s, m, p = task.val_batch(model, b)
        for k in keys:
            sums[k] += s[k]
        n += m
        if p is not None:
            pairs.append(p.cpu())
    tot = _all_sum([sums[k] for k in keys] + [n], device)
    n_all = tot[-1]
    out: dict = {k: (v / n_all if n_all else math.nan) for k, v in zip(keys, tot)}
    out["pairs"] = torch.cat(pairs) if pairs else None
    return out


def _confusion(pairs: torch.Tensor | None, k: int) -> list[list[int]]:
    """Confusion matrix (rows: true class, columns: predicted) of this rank's validation rows."""
    m = torch.zeros(k, k, dtype=torch.int64)
    if pairs is not None and len(pairs):
        m.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs), dtype=torch.int64), accumulate=True)
    return m.tolist()


def _name(t: Transform) -> str:
    parts = (["flip"] if t.flip else []) + ([f"rot{90 * t.k}"] if t.k else []) + \
            ([f"shift({t.dy},{t.dx})"] if t.dy or t.dx else [])
    return "+".join(parts) or "identity"
