"""Where a tile is: its centre in pixel coordinates and, when the frame has a WCS, in world coordinates.

Ingest captures each image HDU's WCS (:func:`capture`) as compact JSON of its header cards, and the manifest
carries it; ranking turns tile centres into world coordinates (:func:`tile_coordinates`) from the manifest
alone, so no later step opens an input file again. A WCS that astropy cannot use is a one-line problem
(logged and shown in the report), never an exception: that frame gets pixel coordinates only.

Pixel conventions: numpy offsets (the manifest's ``y0``/``x0``) are 0-based; astropy's ``*_world_values``
calls take 0-based pixels; the CSV columns ``x_image``/``y_image`` are 1-based, as in FITS, DS9 and
SExtractor (the centre of the first pixel is 1.0).
"""
from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import wcs_to_celestial_frame

from .tiling import table_extent

_WCSLIB_WHERE = re.compile(r"ERROR \d+ in \w+\(\) at line \d+ of file \S+:\s*")  # wcslib's source location

#: Columns ranking adds to anomalies.csv / anomalies_by_frame.csv.
COLUMNS = ["x_image", "y_image", "x_world", "y_world", "world_axes"]


def capture(header: fits.Header, height: int, width: int) -> tuple[str, str]:
    """The frame's 2-D WCS (FITS axes 1 and 2) as JSON of its normalised header cards, and a problem.

    Returns ``("", "")`` for a header without a WCS (no CTYPE1/CTYPE2), ``(json, "")`` for a usable one and
    ``("", reason)`` when astropy rejects it or cannot transform the frame's centre. SIP distortion is
    kept (``relax=True``); distortion lookup tables stored in other HDUs are not.
    """
    if not any(str(header.get(f"CTYPE{i}", "")).strip() for i in (1, 2)):
        return "", ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(header, naxis=2)
            world = w.all_pix2world([[(width - 1) / 2, (height - 1) / 2]], 0)
        if not np.isfinite(world).all():
            return "", "WCS gives no world coordinates at the frame centre"
        return json.dumps(dict(w.to_header(relax=True)), sort_keys=True), ""
    except Exception as exc:  # noqa: BLE001 - any unusable WCS is a warning, never a crash
        text = _WCSLIB_WHERE.sub("", " ".join(str(exc).split())) or type(exc).__name__
        return "", f"unusable WCS: {text[:200]}"


@lru_cache(maxsize=256)
def parse(wcs_json: str) -> WCS | None:
    """The WCS stored by :func:`capture` (None for ''); cached, since every tile of a frame shares one."""
    if not wcs_json:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(fits.Header(json.loads(wcs_json)))


def axes_name(w: WCS) -> str:
    """Short name of the world axes: ``RA/DEC icrs``, ``GLON/GLAT galactic``, or the CTYPE names."""
    names = "/".join(c.split("-")[0] or f"axis{i + 1}" for i, c in enumerate(w.wcs.ctype))
    if w.has_celestial:
        try:
            return f"{names} {wcs_to_celestial_frame(w).name}"
        except ValueError:  # a celestial WCS astropy has no frame class for
            pass
    return names


def tile_centres(y0: np.ndarray, x0: np.ndarray, height: np.ndarray, width: np.ndarray,
                 tile) -> tuple[np.ndarray, np.ndarray]:
    """0-based (x, y) pixel centres of tiles at offsets (y0, x0) whose side is ``tile`` frame pixels (one
    number, or one per tile: :func:`cnnpipe.tiling.frame_extent` of a resampled frame); a frame smaller
    than the tile (padded at ingest) counts only its own pixels."""
    w = np.minimum(tile, np.asarray(width) - np.asarray(x0))
    h = np.minimum(tile, np.asarray(height) - np.asarray(y0))
    return np.asarray(x0) + (w - 1) / 2.0, np.asarray(y0) + (h - 1) / 2.0


def tile_coordinates(tiles: pd.DataFrame, tile: int) -> pd.DataFrame:
    """:data:`COLUMNS` for tiles with ``y0, x0, height, width, wcs`` and ``scale`` (manifest columns; no
    ``scale``: 1) of a run with ``ingest.tile_size`` ``tile``, in their order.

    ``x_image``/``y_image``: 1-based pixel centre; ``x_world``/``y_world``: the WCS's first and second world
    axes there (degrees for celestial axes), NaN without a WCS; ``world_axes``: what those axes are.
    """
    x, y = tile_centres(tiles["y0"], tiles["x0"], tiles["height"], tiles["width"], table_extent(tiles, tile))
    out = pd.DataFrame({"x_image": x + 1.0, "y_image": y + 1.0, "x_world": np.nan, "y_world": np.nan,
                        "world_axes": ""}, index=tiles.index)
    codes, texts = pd.factorize(tiles["wcs"].fillna("").astype(str))
    for c, text in enumerate(texts):
        w = parse(text)
        if w is None:
            continue
        at = np.flatnonzero(codes == c)
        wx, wy = w.all_pix2world(x[at], y[at], 0)
        out.iloc[at, 2], out.iloc[at, 3], out.iloc[at, 4] = wx, wy, axes_name(w)
    return out


def add_coordinates(ranked: pd.DataFrame, frames: pd.DataFrame, tile: int) -> pd.DataFrame:
    """``ranked`` (with ``source, key, frame, y0, x0``) plus :data:`COLUMNS`; ``frames``: one row per frame
    with ``source, key, frame, height, width, wcs`` and ``scale`` (:func:`cnnpipe.tables.read_frames`)."""
    cols = ["source", "key", "frame", "height", "width", *(["scale"] if "scale" in frames else []), "wcs"]
    geo = ranked[["source", "key", "frame", "y0", "x0"]].merge(frames[cols], on=["source", "key", "frame"], how="left")
    geo.index = ranked.index
    return pd.concat([ranked.drop(columns=[c for c in COLUMNS if c in ranked]), tile_coordinates(geo, tile)],
                     axis=1)
