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
from .normalise import normalise_block
from .pixel_outliers import STATS, outlier_maps
from .progress import progress
from .readers import Problem, plan_units, population, read_unit, resolve_inputs, shard_units
from .shards import ShardWriter
from .tables import read_manifest, write_csv
from .tiling import tiles, tiles_per_frame

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["source", "key", "index", "shard", "row", "height", "width", "status", "reason",
                    "frame", "y0", "x0", "label", "header", "population", "wcs", "wcs_problem"]


def prepare(images: np.ndarray, cfg: Config) -> tuple[np.ndarray, dict[str, np.ndarray], list[tuple[int, int, int]],
                                                       np.ndarray]:
    """Normalise a block (n, H, W) and cut it into model-sized tiles.

    Returns ``(tiles (m, T, T), {stat: (m,)}, [(frame_offset, y0, x0)] per tile, usable (n,))``: the stats
    are each tile's most extreme pixel by :func:`outlier_maps` (``sharpness``, ``coldness``), measured on the
    raw values before normalisation clips them; frames with no finite pixel are left out and flagged unusable.
    """
    n = cfg.ingest.normalise
    norm, usable = normalise_block(images, n.method, n.percentiles, n.asinh_softening)
    maps = (outlier_maps(images) if cfg.ingest.pixel_outliers
            else {s: np.zeros(images.shape, np.float32) for s in STATS})
    size, overlap = cfg.ingest.tile_size, cfg.ingest.tile_overlap
    keep = np.flatnonzero(usable)
    if norm.shape[1:] == (size, size):  # already model-sized: no copy
        return norm[keep], {s: _peak(m[keep]) for s, m in maps.items()}, [(int(j), 0, 0) for j in keep], usable
    cut, where = [], []
    cuts: dict[str, list] = {s: [] for s in maps}
    for j in keep:
        for y0, x0, tile in tiles(norm[j], size, overlap):
            cut.append(tile)
            where.append((int(j), y0, x0))
        for s, m in maps.items():
            cuts[s].extend(t for _, _, t in tiles(m[j], size, overlap))
    if not cut:
        return np.empty((0, size, size), np.float32), {s: np.empty(0, np.float32) for s in maps}, where, usable
    return np.stack(cut), {s: _peak(np.stack(c)) for s, c in cuts.items()}, where, usable


def _peak(maps: np.ndarray) -> np.ndarray:
    """Largest value of each (H, W) map, at least 0 (NaN, i.e. masked, pixels count as 0)."""
    return np.nan_to_num(maps, nan=0.0).max(axis=(1, 2), initial=0.0).astype(np.float32)


def ingest_shard(cfg: Config, shard: int, out: str | Path, exclude: tuple[str, ...] = (),
                 keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Ingest the units of ``shard`` into ``out`` (HDF5); return this shard's manifest rows.
    ``exclude``/``keep``: the workflow's own output folders, never read as inputs (see cnnpipe.discover)."""
    limits = cfg.ingest.limits
    units = shard_units(plan_units(resolve_inputs(cfg.inputs, exclude, keep), cfg.ingest.n_shards,
                                   cfg.ingest.hdf5_dataset, limits=limits), shard, cfg.ingest.n_shards)
    rows: list[dict] = []
    size = cfg.ingest.tile_size
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        writer = ShardWriter(f)
        f.attrs["normalise"] = cfg.ingest.normalise.method
        f.attrs["tile_size"], f.attrs["tile_overlap"] = size, cfg.ingest.tile_overlap
        for unit in progress(units, len(units), f"ingest shard {shard}", log, unit="units"):
            records = read_unit(unit, cfg.ingest.chunk_frames, cfg.ingest.hdf5_labels, limits=limits)
            for rec in records:
                if not isinstance(rec, Problem):
                    try:
                        cut, stats, where, usable = prepare(rec.images, cfg)
                    except MemoryError:  # this file is quarantined from here on; the shard goes on
                        records.close()
                        rec = Problem(rec.source, rec.key, rec.start, f"out of memory tiling frames from {rec.start} "
                                      "on (lower ingest.limits.max_frame_pixels or max_read_bytes)")
                if isinstance(rec, Problem):
                    rows.append(_row(rec.source, rec.key, rec.frame, shard, -1, 0, 0, "quarantined", rec.reason))
                    log.warning("quarantined %s [%s]: %s", printable(rec.source), rec.key or "-", rec.reason)
                    continue
                h, w = rec.images.shape[1:]
                for j in np.flatnonzero(~usable):
                    reason = f"frame {rec.start + j}: all pixels are NaN or inf"
                    rows.append(_row(rec.source, rec.key, rec.start + j, shard, -1, h, w, "quarantined", reason))
                    log.warning("quarantined %s [%s]: %s", printable(rec.source), rec.key, reason)
                header = json.dumps(rec.header, default=str)
                pop = population(unit.kind, printable(rec.source), rec.key)
                if rec.wcs_problem:
                    log.warning("WCS of %s [%s] ignored (pixel coordinates only): %s", printable(rec.source),
                                rec.key, rec.wcs_problem)
                per_frame = tiles_per_frame(h, w, size, cfg.ingest.tile_overlap)
                for t, (j, y0, x0) in enumerate(where):
                    index = (rec.start + j) * per_frame + t % per_frame  # the same whichever shard reads it
                    rows.append(_row(rec.source, rec.key, index, shard, writer.n + t, h, w, "ok", "",
                                     rec.start + j, y0, x0, int(rec.labels[j]), header, pop, rec.wcs,
                                     rec.wcs_problem))
                if len(cut):
                    writer.append(frames=cut, **stats, label=rec.labels[[j for j, _, _ in where]].astype(np.int64))
        writer.close(frames=((size, size), "float32"), label=((), "int64"), **{s: ((), "float32") for s in STATS})
    log.info("shard %d: %d tiles from %d units", shard, writer.n, len(units))
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def printable(path: str) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 (surrogate-escaped by the OS) become \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _row(source, key, index, shard, row, height, width, status, reason, frame=-1, y0=0, x0=0, label=-1,
         header="{}", population="", wcs="", wcs_problem="") -> dict:
    return dict(source=printable(source), key=key, index=index, shard=shard, row=row, height=height, width=width,
                status=status, reason=reason, frame=frame, y0=y0, x0=x0, label=label, header=header,
                population=population, wcs=wcs, wcs_problem=wcs_problem)


def merge_manifests(parts: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate the per-shard manifests; raise ValueError when no input gave a single usable frame."""
    df = pd.concat([read_manifest(p) for p in parts], ignore_index=True)
    df["reason"] = df["reason"].fillna("")
    if not (df["status"] == "ok").any():
        bad = df.drop_duplicates("source")
        listing = "; ".join(f"{s}: {r}" for s, r in zip(bad["source"], bad["reason"]))
        raise ValueError(f"no usable frames in any input ({len(bad)} quarantined): {listing[:500]}")
    write_csv(df, out)
    return df
