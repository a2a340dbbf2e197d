"""What every reader yields: units of work, blocks of frames, problems (one-line reasons, never exceptions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from ..normalise import finite_rows


@dataclass(frozen=True)
class Unit:
    """A piece of input read by one ingest job: a whole FITS file, or a frame range of an HDF5 dataset."""

    source: str
    kind: str  # the reader's NAME ("fits", "hdf5"...) or "bad"
    key: str = ""
    start: int = 0
    stop: int = 0
    reason: str = ""


@dataclass
class Block:
    """Consecutive frames ``start .. start+n-1`` of one HDU or dataset, read together."""

    source: str
    key: str
    start: int
    images: np.ndarray  # (n, H, W) float32, NaN = masked; the consumer's to overwrite
    labels: np.ndarray  # (n,) int, -1 = no label
    header: dict
    wcs: str = ""          # the frames' 2-D WCS as JSON header cards (sky.capture); '' = none
    wcs_problem: str = ""  # why a WCS present in the header cannot be used; '' = fine

    def frames(self) -> list[tuple[int, np.ndarray]]:
        return [(self.start + j, img) for j, img in enumerate(self.images)]


@dataclass
class Problem:
    source: str
    key: str
    frame: int
    reason: str


Record = Union[Block, Problem]


def one_line(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return ("out of memory (lower ingest.limits.max_frame_pixels or max_read_bytes, or give the job "
                "more memory)")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def float_frames(block) -> np.ndarray:
    """Native-endian float32 copy with every non-finite pixel (NaN, +-inf) set to NaN, the mask marker.
    Always an array of its own (never a view of a reader's cache): ingestion normalises it in place."""
    out = np.asarray(block, dtype=np.float32)
    if not out.flags.owndata or not out.flags.writeable:
        out = out.copy()
    if out.size and not finite_rows(out.reshape(1, -1))[0]:  # (most blocks have nothing to mask: one fast pass)
        out[~np.isfinite(out)] = np.nan
    return out
