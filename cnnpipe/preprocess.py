"""Preprocessing: Sobel magnitude (+ direction) and max pooling of a frames shard, batched on the device."""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .config import Config
from .filters import fill_masked, max_pool, max_pool_by, sobel_magnitude, sobel_magnitude_direction
from .pixel_outliers import STATS
from .progress import progress
from .shards import ShardWriter, iter_batches, shard_length

log = logging.getLogger(__name__)


def features(frames: torch.Tensor, pool_levels: int = 1, direction: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps of a (N, H, W) batch whose NaN pixels are masked.

    Returns ``(features, valid)``: features (N, C, H/2^L, W/2^L) with channels intensity, Sobel magnitude
    (and direction, taken at the strongest edge of each pooling window), and ``valid``, the fraction of
    unmasked pixels under each pooled pixel. Masked pixels are filled with the frame's median before
    filtering and their own gradient is set to 0, so NaN never reaches a neighbour's gradient.
    """
    filled, mask = fill_masked(frames)
    masked = bool(mask.any())  # the mask bookkeeping is skipped for the common case of clean frames
    if direction:
        mag, theta = sobel_magnitude_direction(filled)
    else:
        mag = sobel_magnitude(filled)
    if masked:
        mag = mag.masked_fill(mask, 0.0)
    channels = [max_pool(filled, pool_levels), max_pool(mag, pool_levels)]
    if direction:
        channels.append(max_pool_by(theta, mag, pool_levels))
    out = torch.stack(channels, dim=1)
    if not masked:
        return out, torch.ones_like(out[:, 0])
    valid = (~mask).to(frames.dtype)[:, None]
    for _ in range(pool_levels):
        valid = F.avg_pool2d(valid, 2)
    return out, valid[:, 0]


def preprocess_shard(cfg: Config, frames_path: str | Path, out: str | Path, device: torch.device) -> int:
    """Filter every frame of a shard into ``out`` (HDF5 datasets ``features``, ``valid``, ``label``, and
    the pixel-outlier stats carried over from ingestion for scoring)."""
    p = cfg.preprocess
    size = cfg.feature_size
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        writer = ShardWriter(f)
        f.attrs["channels"] = ["intensity", "sobel"] + (["direction"] if p.direction else [])
        f.attrs["pool_levels"] = p.pool_levels
        n_batches = -(-shard_length(frames_path, "frames") // p.batch_size)
        for batch in progress(iter_batches(frames_path, ["frames", "label", *STATS], p.batch_size), n_batches,
                              f"preprocess {Path(frames_path).name}", log, unit="batches"):
            x = torch.from_numpy(batch["frames"]).to(device)
            feats, valid = features(x, p.pool_levels, p.direction)
            writer.append(features=feats.cpu().numpy(), valid=valid.cpu().numpy(), label=batch["label"],
                          **{s: batch[s] for s in STATS})
        writer.close(features=((cfg.channels, size, size), "float32"), valid=((size, size), "float32"),
                      label=((), "int64"), **{s: ((), "float32") for s in STATS})
        return writer.n
