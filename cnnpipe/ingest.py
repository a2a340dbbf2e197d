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
from .normalise import normalise
from .readers import Frame, plan_units, read_unit, resolve_inputs, shard_units
from .shards import ShardWriter
from .tiling import tiles

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["source", "key", "index", "shard", "row", "height", "width", "status", "reason",
                    "frame", "y0", "x0", "label", "header"]


def prepare(image: np.ndarray, cfg: Config) -> list[tuple[int, int, np.ndarray]]:
    """Normalise one frame and cut it into model-sized tiles ``(y0, x0, tile)``; ValueError if unusable."""
    n = cfg.ingest.normalise
    norm, _, _ = normalise(image, n.method, n.percentiles, n.asinh_softening)
    return list(tiles(norm, cfg.ingest.tile_size, cfg.ingest.tile_overlap))


def ingest_shard(cfg: Config, shard: int, out: str | Path) -> pd.DataFrame:
    """Ingest the units of ``shard`` into ``out`` (HDF5); return this shard's manifest rows."""
    units = shard_units(plan_units(resolve_inputs(cfg.inputs), cfg.ingest.n_shards, cfg.ingest.hdf5_dataset),
                        shard, cfg.ingest.n_shards)
    rows: list[dict] = []
    size = cfg.ingest.tile_size
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        writer = ShardWriter(f)
        f.attrs["normalise"] = cfg.ingest.normalise.method
        f.attrs["tile_size"], f.attrs["tile_overlap"] = size, cfg.ingest.tile_overlap
        next_index: dict[tuple[str, str], int] = {}
        for unit in units:
            for rec in read_unit(unit, cfg.ingest.chunk_frames, cfg.ingest.hdf5_labels):
                if not isinstance(rec, Frame):
                    rows.append(_row(rec.source, rec.key, rec.frame, shard, -1, 0, 0, "quarantined", rec.reason))
                    log.warning("quarantined %s [%s]: %s", rec.source, rec.key or "-", rec.reason)
                    continue
                h, w = rec.image.shape
                try:
                    cut = prepare(rec.image, cfg)
                except ValueError as exc:
                    rows.append(_row(rec.source, rec.key, rec.frame, shard, -1, h, w, "quarantined",
                                     f"frame {rec.frame}: {exc}"))
                    log.warning("quarantined %s [%s] frame %d: %s", rec.source, rec.key, rec.frame, exc)
                    continue
                header = json.dumps(rec.header or {}, default=str)
                for y0, x0, tile in cut:
                    index = next_index.get((rec.source, rec.key), 0)
                    next_index[(rec.source, rec.key)] = index + 1
                    rows.append(_row(rec.source, rec.key, index, shard, writer.n, h, w, "ok", "",
                                     rec.frame, y0, x0, rec.label, header))
                    writer.append(frames=tile[None], label=np.array([rec.label], dtype=np.int64))
        writer.ensure(frames=((size, size), "float32"), label=((), "int64"))
    log.info("shard %d: %d tiles from %d units", shard, writer.n, len(units))
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def printable(path: str) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 (surrogate-escaped by the OS) become \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _row(source, key, index, shard, row, height, width, status, reason, frame=-1, y0=0, x0=0, label=-1,
         header="{}") -> dict:
    return dict(source=printable(source), key=key, index=index, shard=shard, row=row, height=height, width=width,
                status=status, reason=reason, frame=frame, y0=y0, x0=x0, label=label, header=header)


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
