"""Ingestion: read the inputs of one shard, normalise and tile every frame, write the shard + its manifest.

Bad inputs become manifest rows with ``status=quarantined`` and a one-line reason; the shard is written to a
temporary name and renamed, so an interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import json
import logging
from contextlib import closing
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pandas as pd

from .atomic import atomic_path
from .config import Config
from .normalise import RAW_SCALE, apply_scales, frame_scales
from .pixel_outliers import STATS, outlier_peaks
from .prefetch import prefetch
from .progress import progress
from .readers import Block, Problem, plan_units, population, read_unit, resolve_inputs, shard_units
from .shards import ShardWriter
from .tables import read_manifest, write_csv
from .tiling import cut_tiles, frame_extent, frame_starts, model_shape, tile_starts, tiles_per_frame, upsample

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["source", "key", "index", "shard", "row", "height", "width", "status", "reason",
                    "frame", "y0", "x0", "scale", "label", "header", "population", "wcs", "wcs_problem"]


def prepare(images: np.ndarray, cfg: Config, overwrite: bool = False
            ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Normalise a block (n, H, W) and cut it into model-sized tiles, whole-block array operations only.

    Returns ``(tiles (m, T, T), {stat: (m,)}, where (m, 3) = (frame_offset, y0, x0) per tile, usable (n,))``:
    the stats are each tile's most extreme pixel by :func:`outlier_peaks` (``sharpness``, ``coldness``),
    measured on the raw values before normalisation clips them, and its frame's ``intensity_scale`` and
    ``intensity_offset`` (the spread the frame was divided by and the level taken off it: the tile times
    the scale, plus the offset, is back on the raw scale); frames with no finite
    pixel are left out and flagged unusable. NaN marks masked pixels (the readers turn +-inf into NaN).
    The frames, not their overlapping tiles (up to 2.25x the pixels), are scaled, then cut; ``overwrite``:
    scaled in place in ``images`` (ingestion's arrays are its own), so frames of exactly one tile are never
    copied.

    Frames smaller than the tile (``ingest.small_frames: upsample``) are resampled up after scaling
    (:func:`cnnpipe.tiling.upsample`) and then cut; ``where`` and the stats stay in original frame pixels:
    each tile's outlier pixels are measured on the raw frame over the area the tile covers (a hot pixel is
    one pixel of the frame, not the blur of it that interpolation makes).
    """
    n, ing = cfg.ingest.normalise, cfg.ingest
    offset, scale, usable = frame_scales(images, n.method, n.percentiles)
    keep = np.flatnonzero(usable)
    raw = images if len(keep) == len(images) else images[keep]
    height, width, factor = model_shape(*raw.shape[1:], ing.tile_size, ing.small_frames)
    ys, xs = (frame_starts(tile_starts(max(side, ing.tile_size), ing.tile_size, ing.tile_overlap), factor)
              for side in (height, width))
    per = len(ys) * len(xs)
    stats = (outlier_peaks(raw, ys, xs, int(frame_extent(ing.tile_size, factor)), ing.sharpness_relative)
             if ing.pixel_outliers
             else {s: np.zeros((len(raw), len(ys), len(xs)), np.float32) for s in STATS})
    scaled = apply_scales(raw, offset[keep], scale[keep], n.method, n.asinh_softening,
                          out=raw if overwrite or raw is not images else None)  # (a selection is a copy)
    if factor != 1:
        scaled = upsample(scaled, (height, width))
    tiles = cut_tiles(scaled, ing.tile_size, ing.tile_overlap)[0]
    stats = {s: v.reshape(-1) for s, v in stats.items()}
    stats["intensity_scale"] = np.repeat(scale[keep], per).astype(np.float32)
    stats["intensity_offset"] = np.repeat(offset[keep], per).astype(np.float32)
    where = np.stack([np.repeat(keep, per), np.tile(np.repeat(ys, len(xs)), len(keep)),
                      np.tile(xs, len(ys) * len(keep))], axis=1).astype(np.int64)
    return tiles, stats, where, usable


BATCH_PIXELS = 1 << 22  # small frames (FITS HDUs, HDF5 chunks) are ingested in batches of up to this many pixels

Batch = list[tuple[Block, str]]  # blocks of one frame shape, each with its population


def _batches(records: Iterator[tuple[Block | Problem, str]]) -> Iterator[Problem | Batch]:
    """Consecutive blocks of one frame shape gathered into batches of up to ``BATCH_PIXELS`` pixels (a
    block larger than that is a batch alone), so that many small HDUs, files or HDF5 reads cost a few
    array operations, not a few per frame. Problems pass through in order."""
    batch: Batch = []
    frames = 0
    for rec, pop in records:
        if batch and (isinstance(rec, Problem) or rec.images.shape[1:] != batch[0][0].images.shape[1:]
                      or (frames + len(rec.images)) * rec.images[0].size > BATCH_PIXELS):
            yield batch
            batch, frames = [], 0
        if isinstance(rec, Problem):
            yield rec
        else:
            batch.append((rec, pop))
            frames += len(rec.images)
    if batch:
        yield batch


def _records(cfg: Config, units: list, shard: int) -> Iterator[tuple[Block | Problem, str]]:
    """Every block (or problem) of this shard's units, in order, with the block's population."""
    ing = cfg.ingest
    for unit in progress(units, len(units), f"ingest shard {shard}", log, unit="units"):
        for rec in read_unit(unit, ing.chunk_frames, ing.hdf5_labels, limits=ing.limits):
            yield rec, ("" if isinstance(rec, Problem) else population(unit.kind, printable(rec.source), rec.key))


def _batch_rows(batch: Batch, where: np.ndarray, usable: np.ndarray, labels: np.ndarray, shard: int, first_row: int,
                per_frame: int, scale: float) -> list[dict[str, np.ndarray]]:
    """Manifest columns of a batch: a quarantine row per unusable frame, an ok row per tile (``scale``: model
    pixels per frame pixel of the batch's frames, :func:`cnnpipe.tiling.model_shape`). The ok rows are built
    for the whole batch at once (per-block columns indexed by each tile's block): building them block by block
    cost more than reading a small HDU, in the thread that computes while the reader thread reads."""
    parts, firsts = [], np.cumsum([0] + [len(rec.images) for rec, _ in batch])  # each block's first frame
    h, w = batch[0][0].images.shape[1:]
    for (rec, _), first in zip(batch, firsts):
        if rec.wcs_problem:
            log.warning("WCS of %s [%s] ignored (pixel coordinates only): %s", printable(rec.source), rec.key,
                        rec.wcs_problem)
        for j in np.flatnonzero(~usable[first:first + len(rec.images)]):
            reason = f"frame {rec.start + j}: all pixels are NaN or inf"
            parts.append(_rows(rec.source, rec.key, rec.start + j, shard, -1, h, w, "quarantined", reason))
            log.warning("quarantined %s [%s]: %s", printable(rec.source), rec.key, reason)
    if not len(where):
        return parts
    block = np.searchsorted(firsts, where[:, 0], side="right") - 1

    def per_block(values) -> np.ndarray:
        return np.array(list(values), dtype=object)[block]

    recs = [rec for rec, _ in batch]
    frame = np.array([rec.start for rec in recs])[block] + where[:, 0] - firsts[block]
    index = frame * per_frame + np.arange(len(where)) % per_frame  # the same whichever shard reads it
    parts.append(_rows(per_block(printable(r.source) for r in recs), per_block(r.key for r in recs), index, shard,
                       first_row + np.arange(len(where)), h, w, "ok", "", frame, where[:, 1], where[:, 2], scale,
                       labels, per_block(json.dumps(r.header, default=str) for r in recs),
                       per_block(pop for _, pop in batch), per_block(r.wcs for r in recs),
                       per_block(r.wcs_problem for r in recs)))
    return parts


def ingest_shard(cfg: Config, shard: int, out: str | Path, exclude: tuple[str, ...] = (),
                 keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Ingest the units of ``shard`` into ``out`` (HDF5); return this shard's manifest rows.

    A reader thread reads ahead (:func:`prefetch`) while blocks are normalised, tiled and written.
    ``exclude``/``keep``: the workflow's own output folders, never read as inputs (see cnnpipe.discover)."""
    ing = cfg.ingest
    units = shard_units(plan_units(resolve_inputs(cfg.inputs, exclude, keep), ing.n_shards, ing.hdf5_dataset,
                                   limits=ing.limits), shard, ing.n_shards)
    parts: list[dict[str, np.ndarray]] = []
    size = ing.tile_size
    records = prefetch(_records(cfg, units, shard))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f, closing(records):
        writer = ShardWriter(f)
        f.attrs["normalise"] = ing.normalise.method
        f.attrs["tile_size"], f.attrs["tile_overlap"] = size, ing.tile_overlap
        f.attrs["small_frames"] = ing.small_frames
        for batch in _batches(records):
            if isinstance(batch, Problem):
                parts.append(_rows(batch.source, batch.key, batch.frame, shard, -1, 0, 0, "quarantined", batch.reason))
                log.warning("quarantined %s [%s]: %s", printable(batch.source), batch.key or "-", batch.reason)
                continue
            blocks = [rec for rec, _ in batch]
            images = blocks[0].images if len(blocks) == 1 else np.concatenate([b.images for b in blocks])
            try:
                cut, stats, where, usable = prepare(images, cfg, overwrite=True)
            except MemoryError:  # these blocks are quarantined; the shard goes on
                for b in blocks:
                    reason = (f"out of memory tiling frames from {b.start} on "
                              "(lower ingest.limits.max_frame_pixels or max_read_bytes)")
                    parts.append(_rows(b.source, b.key, b.start, shard, -1, 0, 0, "quarantined", reason))
                    log.warning("quarantined %s [%s]: %s", printable(b.source), b.key, reason)
                continue
            labels = np.concatenate([b.labels for b in blocks]).astype(np.int64)[where[:, 0]]
            height, width, scale = model_shape(*images.shape[1:], size, ing.small_frames)
            per_frame = tiles_per_frame(height, width, size, ing.tile_overlap)
            parts += _batch_rows(batch, where, usable, labels, shard, writer.n, per_frame, scale)
            if len(cut):
                writer.append(frames=cut, **stats, label=labels)
        writer.close(frames=((size, size), "float32"), label=((), "int64"),
                     **{s: ((), "float32") for s in (*STATS, *RAW_SCALE)})
    log.info("shard %d: %d tiles from %d units", shard, writer.n, len(units))
    return _frame(parts)


def printable(path: str) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 (surrogate-escaped by the OS) become \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _rows(source, key, index, shard, row, height, width, status, reason, frame=-1, y0=0, x0=0, scale=1.0, label=-1,
          header="{}", population="", wcs="", wcs_problem="") -> dict[str, np.ndarray]:
    """Manifest columns of one block: arrays give one row per element, scalars are repeated (one row if
    nothing is an array). Plain arrays, not a DataFrame: building one per block costs more than the block."""
    source = printable(source) if isinstance(source, str) else source  # (a batch's column is made printable)
    cols = dict(source=source, key=key, index=index, shard=shard, row=row, height=height, width=width,
                status=status, reason=reason, frame=frame, y0=y0, x0=x0, scale=scale, label=label, header=header,
                population=population, wcs=wcs, wcs_problem=wcs_problem)
    m = max([len(v) for v in cols.values() if np.ndim(v)], default=1)
    return {c: np.asarray(v) if np.ndim(v) else np.full(m, v, dtype=object if isinstance(v, str) else None)
            for c, v in cols.items()}


def _frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """One manifest DataFrame from the blocks' columns."""
    if not parts:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in MANIFEST_COLUMNS})


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
