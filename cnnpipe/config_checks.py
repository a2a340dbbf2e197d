"""Config checks JSON-schema cannot state: finite numbers only, and keys that must agree with each other.

Called by :func:`cnnpipe.config.validate` after the schema (so every default is filled in); each problem is a
one-line ``config error`` naming the keys and what to do.
"""
from __future__ import annotations

import math
from typing import Any, Iterator


def _numbers(data: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _numbers(v, f"{path}/{k}" if path else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _numbers(v, f"{path}/{i}")
    elif isinstance(data, float):
        yield path, data


def problems(data: dict) -> list[str]:
    """Every problem of a schema-valid, default-filled config (empty = fine)."""
    out = [f"config error at '{where}': {value} is not a finite number (.nan and .inf are refused)"
           for where, value in _numbers(data) if not math.isfinite(value)]
    ing, pre, vae = data["ingest"], data["preprocess"], data["train"]["vae"]
    if ing["tile_overlap"] >= ing["tile_size"]:
        out.append(f"config error: ingest/tile_overlap ({ing['tile_overlap']}) must be less than ingest/tile_size "
                   f"({ing['tile_size']}): neighbouring tiles would start less than one pixel apart")
    side = ing["tile_size"] >> pre["pool_levels"]
    need = 2 ** len(vae["channels"])
    if side < need:
        out.append(f"config error: a {ing['tile_size']}-pixel tile pooled {pre['pool_levels']} times is {side} "
                   f"pixels, but train/vae/channels has {len(vae['channels'])} stride-2 layers that need at least "
                   f"{need}: lower preprocess/pool_levels, shorten train/vae/channels or raise ingest/tile_size")
    small, large = data["score"]["diffuse_sigmas"]
    if small <= 0 or 0 < large <= small:
        out.append(f"config error: score/diffuse_sigmas ({small}, {large}) must be a width above 0, then 0 (no "
                   f"band-pass) or a larger width: the diffuse score subtracts the second average from the first")
    return out
