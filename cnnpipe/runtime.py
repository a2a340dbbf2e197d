"""Where a training run executes: device, distributed ranks, mixed precision, RNG states, progress bar."""
from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from .config import Config
from .device import select


def rng_state(gen: torch.Generator, order: np.random.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "augment": gen.get_state(),
             "order": json.dumps(order.bit_generator.state)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gen: torch.Generator, order: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["augment"])
    order.bit_generator.state = json.loads(state["order"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def progress_bar(total: int, desc: str, enabled: bool):
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
    return None


def all_sum(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_min(value: int, world: int, device: torch.device) -> int:
    """The smallest ``value`` over the ranks (every rank must take the same number of steps)."""
    if world <= 1:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def run_device(cfg: Config, threads: int | None, rank: int, world: int) -> torch.device:
    device = select(cfg.device, threads)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    return device


def gather_rng(state: dict, world: int) -> list[dict]:
    """Every rank's RNG states (rank order), so a resumed distributed run restores each rank's stream."""
    if world == 1:
        return [state]
    out: list = [None] * world
    dist.all_gather_object(out, state)
    return out
