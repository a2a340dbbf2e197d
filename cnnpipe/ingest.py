"""Ingestion: read the inputs of one shard, normalise and tile every frame, write the shard + its manifest.

Bad inputs become manifest rows with ``status=quarantined`` and a one-line reason; the shard is written to a
temporary name and renamed, so an interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .atomic import atomic_path
from .config import Config
from .normalise import apply_scales, frame_scales
from .pixel_outliers import STATS, outlier_peaks
from .progress import progress
from .readers import Problem, plan_units, read_unit, resolve_inputs, shard_units
from .shards import ShardWriter
from .tiling import cut_tiles, tiles_per_frame

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["source", "key", "index", "shard", "row", "height", "width", "status", "reason",
                    "frame", "y0", "x0", "label", "header"]


def prepare(images: np.ndarray, cfg: Config) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Normalise a block (n, H, W) and cut it into model-sized tiles, whole-block array operations only.

    Returns ``(tiles (m, T, T), {stat: (m,)}, where (m, 3) = (frame_offset, y0, x0) per tile, usable (n,))``:
    the stats are each tile's most extreme pixel by :func:`outlier_peaks` (``sharpness``, ``coldness``),
    measured on the raw values before normalisation clips them; frames with no finite pixel are left out
    and flagged unusable. NaN marks masked pixels (the readers turn +-inf into NaN).
    """
    n, ing = cfg.ingest.normalise, cfg.ingest
    offset, scale, usable = frame_scales(images, n.method, n.percentiles)
    keep = np.flatnonzero(usable)
    raw = images if len(keep) == len(images) else images[keep]
    cut, ys, xs = cut_tiles(raw, ing.tile_size, ing.tile_overlap)
    per = len(ys) * len(xs)
    stats = (outlier_peaks(raw, ys, xs, ing.tile_size) if ing.pixel_outliers
             else {s: np.zeros((len(raw), len(ys), len(xs)), np.float32) for s in STATS})
    tiles = apply_scales(cut, np.repeat(offset[keep], per), np.repeat(scale[keep], per), n.method,
                         n.asinh_softening, out=None if cut is images else cut)  # a copy is scaled in place
    where = np.stack([np.repeat(keep, per), np.tile(np.repeat(ys, len(xs)), len(keep)),
                      np.tile(xs, len(ys) * len(keep))], axis=1).astype(np.int64)
    return tiles, {s: v.reshape(-1) for s, v in stats.items()}, where, usable


def ingest_shard(cfg: Config, shard: int, out: str | Path) -> pd.DataFrame:
    """Ingest the units of ``shard`` into ``out`` (HDF5); return this shard's manifest rows."""
    units = shard_units(plan_units(resolve_inputs(cfg.inputs), cfg.ingest.n_shards, cfg.ingest.hdf5_dataset),
                        shard, cfg.ingest.n_shards)
    parts: list[pd.DataFrame] = []
    size = cfg.ingest.tile_size
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        writer = ShardWriter(f)
        f.attrs["normalise"] = cfg.ingest.normalise.method
        f.attrs["tile_size"], f.attrs["tile_overlap"] = size, cfg.ingest.tile_overlap
        for unit in progress(units, len(units), f"ingest shard {shard}", log, unit="units"):
            for rec in read_unit(unit, cfg.ingest.chunk_frames, cfg.ingest.hdf5_labels):
                if isinstance(rec, Problem):
                    parts.append(_rows(rec.source, rec.key, rec.frame, shard, -1, 0, 0, "quarantined", rec.reason))
                    log.warning("quarantined %s [%s]: %s", printable(rec.source), rec.key or "-", rec.reason)
                    continue
                h, w = rec.images.shape[1:]
                cut, stats, where, usable = prepare(rec.images, cfg)
                for j in np.flatnonzero(~usable):
                    reason = f"frame {rec.start + j}: all pixels are NaN or inf"
                    parts.append(_rows(rec.source, rec.key, rec.start + j, shard, -1, h, w, "quarantined", reason))
                    log.warning("quarantined %s [%s]: %s", printable(rec.source), rec.key, reason)
                if len(cut):
                    per_frame = tiles_per_frame(h, w, size, cfg.ingest.tile_overlap)
                    frame, label = rec.start + where[:, 0], rec.labels[where[:, 0]].astype(np.int64)
                    index = frame * per_frame + np.arange(len(cut)) % per_frame  # the same whichever shard reads it
                    parts.append(_rows(rec.source, rec.key, index, shard, writer.n + np.arange(len(cut)), h, w, "ok",
                                       "", frame, where[:, 1], where[:, 2], label, json.dumps(rec.header, default=str)))
                    writer.append(frames=cut, **stats, label=label)
        writer.close(frames=((size, size), "float32"), label=((), "int64"), **{s: ((), "float32") for s in STATS})
    log.info("shard %d: %d tiles from %d units", shard, writer.n, len(units))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=MANIFEST_COLUMNS)


def printable(path: str) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 (surrogate-escaped by the OS) become \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _rows(source, key, index, shard, row, height, width, status, reason, frame=-1, y0=0, x0=0, label=-1,
          header="{}") -> pd.DataFrame:
    """Manifest rows of one block: scalars are shared, arrays give one row per element (one row if none)."""
    cols = dict(source=printable(source), key=key, index=index, shard=shard, row=row, height=height, width=width,
                status=status, reason=reason, frame=frame, y0=y0, x0=x0, label=label, header=header)
    return pd.DataFrame(cols, index=None if any(np.ndim(v) for v in cols.values()) else [0])[MANIFEST_COLUMNS]


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically (temp name, then rename)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_csv(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"source": str, "key": str, "reason": str})


def merge_manifests(parts: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate the per-shard manifests; raise ValueError when no input gave a single usable frame."""
    df = pd.concat([read_csv(p) for p in parts], ignore_index=True)
    df["reason"] = df["reason"].fillna("")
    if not (df["status"] == "ok").any():
        bad = df.drop_duplicates("source")
        listing = "; ".join(f"{s}: {r}" for s, r in zip(bad["source"], bad["reason"]))
        raise ValueError(f"no usable frames in any input ({len(bad)} quarantined): {listing[:500]}")
    write_csv(df, out)
    return df
