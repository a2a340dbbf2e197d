"""Validation: a model's mean metrics over a stream (every distributed rank summed), confusion matrix."""
from __future__ import annotations

import math

import torch
from torch import nn

from .data import ShardStream
from .runtime import all_sum, autocast


@torch.no_grad()
def evaluate(model: nn.Module, task, stream: ShardStream, device: torch.device, amp: bool) -> dict:
    """Mean validation metrics over ``stream`` (all ranks summed); NaN when there is no validation data."""
    model.eval()
    keys = ["loss", *task.terms]
    sums, n, pairs = dict.fromkeys(keys, 0.0), 0, []
    for b in stream:
        b = {k: v.to(device) for k, v in b.items()}
        with autocast(device, amp):
            s, m, p = task.val_batch(model, b)
        for k in keys:
            sums[k] += s[k]
        n += m
        if p is not None:
            pairs.append(p.cpu())
    tot = all_sum([sums[k] for k in keys] + [n], device)
    n_all = tot[-1]
    out: dict = {k: (v / n_all if n_all else math.nan) for k, v in zip(keys, tot)}
    out["pairs"] = torch.cat(pairs) if pairs else None
    return out


def confusion(pairs: torch.Tensor | None, k: int) -> list[list[int]]:
    """Confusion matrix (rows: true class, columns: predicted) of this rank's validation rows."""
    m = torch.zeros(k, k, dtype=torch.int64)
    if pairs is not None and len(pairs):
        m.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs), dtype=torch.int64), accumulate=True)
    return m.tolist()
