"""One plain training loop for the CNN and the VAE.

The data come from :mod:`cnnpipe.data` (train/val split by frame id, a bounded shuffle buffer); what a
model's loss is lives in its module (``models.vae.VAEObjective``, ``models.cnn.CNNObjective``).

Loop: AdamW, cosine learning-rate schedule over all steps, early stopping on the validation loss
(``cfg.train.patience``), seeds for determinism on CPU, mixed precision on CUDA only. After every epoch
a checkpoint (weights, optimizer, scheduler, every RNG state including the data order) is written to a
temporary file and renamed; ``resume=True`` continues from it and ends with the same weights as an
uninterrupted run. Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel
(gloo on CPU, nccl on CUDA) and each rank streams a disjoint subset of the rows.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from . import __version__
from .atomic import atomic_path
from .augment import transform_name
from .checkpoint import check_model_config, expected_config
from .checkpoint import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .config import Config
from .data import DataPlan, Part, ShardStream, plan_data, sample_parts  # noqa: F401  (Part: training API)
from .errors import UserError
from .evaluate import confusion, evaluate
from .models import build
from .models.cnn import CNNObjective
from .models.vae import VAEObjective, active_dims, pixel_residual_scale
from .prefetch import prefetch
from .runtime import (all_min, all_sum, autocast, gather_rng, init_distributed, progress_bar, rng_state, run_device,
                      set_rng_state)

log = logging.getLogger(__name__)


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


def objective(cfg: Config, kind: str, classes: list):
    """The model's training objective (its loss and validation metrics)."""
    return VAEObjective(cfg) if kind == "vae" else CNNObjective(cfg, classes)


def checkpoint_path(out: str | Path) -> Path:
    """Where the per-epoch training checkpoint of ``out`` lives: ``cnn.pt`` -> ``cnn.ckpt.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.ckpt{out.suffix or '.pt'}")


def _fingerprint(cfg: Config, kind: str) -> str:
    """The settings a resumed run must share with the checkpoint (everything that changes the weights)."""
    train = {k: v for k, v in cfg.raw["train"].items() if k not in ("cnn", "vae")}
    return json.dumps({"seed": cfg.seed, "augment": cfg.raw["augment"], "train": train,
                       kind: cfg.raw["train"][kind]}, sort_keys=True)


def _write_metrics(history: list[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def _plan(cfg: Config, kind: str, features: list[str], manifest: str | Path, rank: int, world: int) -> DataPlan:
    tc = cfg.train
    plan = plan_data(features, manifest, tc.val_fraction, tc.cnn.labels_csv if kind == "cnn" else None,
                     use_labels=kind == "cnn", rank=rank, world=world)
    if kind == "cnn" and len(plan.classes) == 1:
        log.warning("only one class (%r) is labelled: training the CNN self-supervised", plan.classes[0])
        plan = plan_data(features, manifest, tc.val_fraction, rank=rank, world=world)
    return plan


def _resume(ckpt: Path, run: dict, mcfg: dict, fingerprint: str, rank: int) -> dict:
    """Restore weights, optimiser, scheduler, scaler and RNG streams from ``ckpt``; the training state."""
    ck = load_checkpoint(ckpt)
    check_model_config(ck["model"], mcfg, ckpt)
    if ck.get("fingerprint") != fingerprint:
        raise UserError(f"{ckpt} was written with different training settings; drop --resume to start over")
    run["model"].load_state_dict(ck["state_dict"])
    run["opt"].load_state_dict(ck["optimizer"])
    run["sched"].load_state_dict(ck["scheduler"])
    run["scaler"].load_state_dict(ck["scaler"])
    set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0], run["gen"], run["order"])
    state = {k: ck["train_state"][k] for k in ("epoch", "best", "best_epoch", "bad", "stopped", "history")}
    state["best_state"] = ck["best_state"]
    return state


def _epoch(net: nn.Module, task, stream: ShardStream, steps: int, run: dict, epoch: int, epochs: int,
           amp: bool, main: bool) -> tuple[dict, int, float, float]:
    """One pass over the training stream: summed loss terms, rows seen, wall and CPU seconds."""
    device, opt, sched, scaler, gen = run["device"], run["opt"], run["sched"], run["scaler"], run["gen"]
    net.train()
    sums, seen, t0, c0 = {}, 0, time.perf_counter(), time.process_time()
    bar = progress_bar(steps, f"{run['kind']} epoch {epoch + 1}/{epochs}", main)
    batches = prefetch(iter(stream), depth=4)  # the next batches are read while this one trains (on a GPU,
    for step, b in enumerate(batches):         # reading them was most of a step's time)
        if step == steps:
            batches.close()
            break
        b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        task.set_progress(epoch + step / steps)
        with autocast(device, amp):
            loss, terms = task.train_loss(net, b, gen)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        n = b["x"].shape[0]
        seen += n
        for k, v in {"loss": loss, **terms}.items():  # summed on the device: no GPU sync per step
            sums[k] = sums.get(k, 0.0) + v.detach().double() * n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4g}")
    if bar is not None:
        bar.close()
    return {k: float(v) for k, v in sums.items()}, seen, time.perf_counter() - t0, time.process_time() - c0


def _track_best(state: dict, row: dict, model: nn.Module, kind: str, epoch: int, warmup: float, epochs: int,
                patience: int) -> None:
    """Keep the best weights by validation loss (train loss without validation data); early stopping."""
    monitor = row["val_loss"] if not math.isnan(row.get("val_loss", math.nan)) else row["train_loss"]
    if kind == "vae" and epoch + 1 < min(warmup, epochs):
        pass  # still warming up the KL weight: a different objective, not a candidate for the best model
    elif monitor < state["best"]:
        state.update(best=monitor, best_epoch=epoch + 1, bad=0,
                     best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    else:
        state["bad"] += 1
        state["stopped"] = state["bad"] >= patience


def _save_epoch(run: dict, state: dict, meta: dict, ckpt: Path, fingerprint: str, metrics, row: dict,
                epochs: int, patience: int, main: bool, world: int) -> None:
    """The per-epoch checkpoint (every rank's RNG streams included) and metrics CSV, written by rank 0."""
    rngs = gather_rng(rng_state(run["gen"], run["order"]), world)
    if not main:
        return
    save_checkpoint(ckpt, run["model"], run["mcfg"], meta, optimizer=run["opt"].state_dict(),
                    scheduler=run["sched"].state_dict(), scaler=run["scaler"].state_dict(), rng=rngs,
                    fingerprint=fingerprint, train_state={k: v for k, v in state.items() if k != "best_state"},
                    best_state=state["best_state"])
    _write_metrics(state["history"], metrics)
    log.info("%s epoch %d/%d: %s", run["kind"], state["epoch"], epochs,
             ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
    if state["stopped"]:
        log.info("%s: early stop, no val improvement for %d epochs", run["kind"], patience)


def _setup(cfg: Config, kind: str, plan: DataPlan, task, device: torch.device, rank: int, world: int) -> dict:
    """Model, streams, optimiser, schedule, loss scaler and the two RNG streams of a run."""
    tc = cfg.train
    sub = tc.cnn if kind == "cnn" else tc.vae
    mcfg = model_config(cfg, kind, plan.shape, task.n_classes)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build(mcfg).to(device)
    train_stream = ShardStream(plan.train, tc.batch_size, tc.shuffle_buffer, shuffle=True)
    val_rows = sample_parts(plan.val, tc.val_rows, np.random.default_rng([cfg.seed, 3, rank]))  # fixed
    val_stream = ShardStream(val_rows, tc.batch_size, shuffle=False)
    steps = all_min(len(train_stream), world, device)   # optimiser steps per epoch, the same on every rank
    if sub.max_steps:  # the budget: each epoch at most its share of max_steps, on a fresh sample of the rows
        steps = min(steps, math.ceil(sub.max_steps / sub.epochs))
    if steps == 0:
        raise UserError(f"no training rows for the {kind} (all {val_stream.n_rows} went to validation or none "
                        "are labelled); lower train.val_fraction or add data")
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=sub.epochs * steps)
    use_scaler = device.type == "cuda" and tc.amp and not torch.cuda.is_bf16_supported()
    return {"kind": kind, "device": device, "mcfg": mcfg, "model": model, "train": train_stream,
            "val": val_stream, "steps": steps, "opt": opt, "sched": sched,
            "scaler": torch.amp.GradScaler("cuda", enabled=use_scaler),
            "gen": torch.Generator().manual_seed(cfg.seed * 1000 + 1 + rank),
            "order": np.random.default_rng([cfg.seed, 2, rank])}


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
    rank, world = init_distributed()
    device = run_device(cfg, threads, rank, world)
    main = rank == 0
    tc = cfg.train
    sub = tc.cnn if kind == "cnn" else tc.vae
    plan = _plan(cfg, kind, features, manifest, rank, world)
    task = objective(cfg, kind, plan.classes)
    run = _setup(cfg, kind, plan, task, device, rank, world)
    model, mcfg = run["model"], run["mcfg"]
    meta = {"kind": kind, "mode": task.mode,
            "transforms": [[t.k, int(t.flip), t.dy, t.dx] for t in task.transforms],
            "classes": list(plan.classes), "cnnpipe_version": __version__,
            "config": json.loads(json.dumps(cfg.raw)), "feature_shards": [str(p) for p in features]}
    state = {"epoch": 0, "best": math.inf, "best_epoch": -1, "bad": 0, "stopped": False, "history": [],
             "best_state": None}
    ckpt, fingerprint = checkpoint_path(out), _fingerprint(cfg, kind)
    if resume and ckpt.is_file():
        state = _resume(ckpt, run, mcfg, fingerprint, rank)
        if main:
            log.info("resuming %s from %s after epoch %d", kind, ckpt, state["epoch"])
    elif resume and main:
        log.info("no checkpoint at %s: starting %s from scratch", ckpt, kind)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    for epoch in range(state["epoch"], sub.epochs):
        if state["stopped"]:
            break
        stream = run["train"].sample(run["steps"] * tc.batch_size, int(run["order"].integers(2 ** 63)))
        lr = run["opt"].param_groups[0]["lr"]
        sums, seen, seconds, cpu_seconds = _epoch(net, task, stream, run["steps"], run, epoch, sub.epochs, tc.amp,
                                                  main)
        keys = ["loss", *task.terms]
        tot = all_sum([sums.get(k, 0.0) for k in keys] + [seen, seconds], device)
        seen_all = tot[len(keys)]
        row = {"epoch": epoch + 1, **{f"train_{k}": v / max(seen_all, 1) for k, v in zip(keys, tot)}}
        val = evaluate(net, task, run["val"], device, tc.amp)
        row.update({f"val_{k}": v for k, v in val.items() if k != "pairs"})
        row["lr"] = lr  # at the start of the epoch (the cosine schedule steps every batch)
        row["train_rows"] = seen_all  # the budget's share of an epoch (all ranks), not the data size
        row["samples_per_s"] = seen_all / max(seconds, 1e-9)
        row["seconds"] = seconds
        row["cpu_seconds"] = cpu_seconds  # this process's CPU time: robust to other load on a shared machine
        _track_best(state, row, model, kind, epoch, getattr(sub, "kl_warmup_epochs", 0), sub.epochs, tc.patience)
        state["history"].append(row)
        state["epoch"] = epoch + 1
        _save_epoch(run, state, meta, ckpt, fingerprint, metrics, row, sub.epochs, tc.patience, main, world)
        if stop_after is not None and epoch + 1 >= stop_after:
            return {"interrupted_after": epoch + 1}
    return _finish(cfg, kind, run, plan, task, state, meta, out, metrics, main, world)


def _finish(cfg: Config, kind: str, run: dict, plan: DataPlan, task, state: dict, meta: dict, out, metrics,
            main: bool, world: int) -> dict:
    """Best weights back in, the VAE's per-pixel residual scale, final validation; write model and summary."""
    model, device, tc = run["model"], run["device"], cfg.train
    model.load_state_dict(state["best_state"])
    if kind == "vae":
        rows = sample_parts(plan.train, run["steps"] * tc.batch_size, np.random.default_rng([cfg.seed, 4]))
        model.residual_scale.copy_(pixel_residual_scale(model, ShardStream(rows, tc.batch_size, shuffle=False), device))
    final = evaluate(model, task, run["val"], device, tc.amp)
    summary = {"kind": kind, "mode": task.mode, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
               "stopped_early": state["stopped"], "n_train": run["train"].n_rows, "n_val": run["val"].n_rows,
               "world_size": world, "device": str(device),
               **{f"val_{k}": v for k, v in final.items() if k != "pairs"}}
    if kind == "vae":
        summary["active_latent_dims"] = active_dims(model, run["val"], device, cfg.score.latent_active)
    if kind == "cnn":
        summary["classes"] = plan.classes if plan.classes else [transform_name(t) for t in task.transforms]
        summary["confusion"] = confusion(final.get("pairs"), task.n_classes)
    if main:
        meta.update(epoch=state["best_epoch"], epochs_run=state["epoch"],
                    best_val_loss=None if math.isinf(state["best"]) else state["best"])
        save_checkpoint(out, model, run["mcfg"], meta)
        _write_metrics(state["history"], metrics)
        with atomic_path(Path(metrics).with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(summary, indent=1, default=str))
        log.info("%s (%s) saved to %s: best epoch %d, %s", kind, task.mode, out, state["best_epoch"],
                 ", ".join(f"{k}={v:.4g}" for k, v in summary.items() if k.startswith("val_") and v == v))
        if not cfg.train.keep_checkpoint:  # only --resume reads it, and the model is saved
            checkpoint_path(out).unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    return summary
