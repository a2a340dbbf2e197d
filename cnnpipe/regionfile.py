"""DS9 region files of the top anomalies: one file per FITS frame, one box per top-ranked tile in it.

``ds9 frame.fits -regions frame.reg`` shows the boxes. Per-frame files (not one combined file) because a
DS9 region file belongs to the image it is loaded on: boxes in image coordinates mean nothing on another
frame, and a frame's file then lists exactly the anomalies to look at in it. Frames with a celestial WCS
get sky boxes (centre, size and angle from the WCS, so the file also works on any other image of that
field); frames without one, or with a WCS that could not be used, get image (pixel) boxes. Each file
starts with comment lines naming its frame and the ds9 command that shows it.

Names mirror the inputs below their common folder: ``<path without the FITS suffix>[.hdu<key>][.plane<i>].reg``
(``.hduK`` for HDUs other than the primary, ``.planeI`` for planes of a cube, 0-based like the CSVs'
``frame``). A path too deep or too long to mirror (more than ``MAX_DEPTH`` folders or ``MAX_CHARS``
characters) gets a flat name instead: ``<file stem>-<12 hex digits of its path's SHA-1>[.hdu..][.plane..].reg``.
HDF5 frames get no file: DS9 does not read HDF5.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pandas as pd
from regions import PixCoord, RectanglePixelRegion, Regions

from . import sky
from .atomic import atomic_dir
from .readers import file_kind
from .tiling import table_extent

ID = ["source", "key", "index"]
_SUFFIX = re.compile(r"(\.(fits|fit|fts)(\.gz|\.fz)?|\.fz)$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DEPTH, MAX_CHARS = 32, 1024  # past these a mirrored name fails (ENAMETOOLONG, deep mkdir): go flat


def region_name(source: str, key: str, frame: int, root: str, cube: bool) -> str:
    """Relative file name of a frame's region file (see the module docstring)."""
    stem = _SUFFIX.sub("", os.path.relpath(os.path.abspath(source), root))
    tail = f"{'' if key == '0' else f'.hdu{key}'}{f'.plane{frame}' if cube else ''}.reg"
    if stem.count(os.sep) > MAX_DEPTH or len(stem) + len(tail) > MAX_CHARS:
        digest = hashlib.sha1(stem.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        stem = f"{os.path.basename(stem)[:100]}-{digest}"
    return stem + tail


def tile_box(y0: int, x0: int, height: int, width: int, tile: int, wcs_json: str, text: str):
    """The tile's box: a sky rectangle when the frame has a celestial WCS, else a pixel rectangle; ``tile``:
    its side in frame pixels (:func:`cnnpipe.tiling.frame_extent`)."""
    cx, cy = sky.tile_centres(y0, x0, height, width, tile)  # 0-based, as regions' PixCoord expects
    box = RectanglePixelRegion(PixCoord(float(cx), float(cy)), width=float(min(tile, width - x0)),
                               height=float(min(tile, height - y0)))
    box.meta["text"] = text
    w = sky.parse(wcs_json)
    return box.to_sky(w) if w is not None and w.has_celestial else box


def _serialize(boxes: list) -> str:
    """DS9 text of the boxes, each with its own ``text`` label (regions moves the metadata all regions
    share, here a lone box's label, to a ``global`` line that would label every region DS9 draws)."""
    text = Regions(boxes).serialize(format="ds9")
    if len(boxes) == 1 and "text" in boxes[0].meta:
        label = "global text={%s}\n" % boxes[0].meta["text"]
        text = text.replace(label, "").rstrip("\n") + " # text={%s}\n" % boxes[0].meta["text"]
    return text


def ds9_command(source: str, key: str, frame: int, cube: bool, name: str) -> str:
    hdu = "" if key == "0" else f"[{key}]"
    plane = f" -cube {frame + 1}" if cube else ""
    return f"ds9 '{source}{hdu}'{plane} -regions {name}"


def write_regions(top: pd.DataFrame, frames: pd.DataFrame, tile: int, out_dir: str | Path) -> int:
    """Write a region file per FITS frame holding any of the ``top`` rows into ``out_dir`` (replaced as a
    whole); return how many files.

    ``top``: ranked rows with ``source, key, frame, y0, x0, score, rank``; ``frames``: every usable frame with
    ``source, key, frame, height, width, wcs`` and ``scale`` (boxes are in frame pixels). Names are relative
    to all FITS inputs' common folder, so they do not change when the ranking does.
    """
    frames = frames[frames["source"].map(file_kind) == "fits"]
    planes = frames.groupby(["source", "key"])["frame"].nunique()
    cubes = set(planes[planes > 1].index)
    folders = [os.path.dirname(os.path.abspath(s)) for s in frames["source"].unique()]
    root = os.path.commonpath(folders) if folders else ""
    rows = top.merge(frames, on=["source", "key", "frame"]).sort_values("rank")
    groups = rows.groupby(["source", "key", "frame"], sort=False)
    with atomic_dir(out_dir) as tmp:
        for (source, key, frame), g in groups:
            cube = (source, key) in cubes
            name = region_name(source, key, int(frame), root, cube)
            sides = table_extent(g, tile)
            boxes = [tile_box(int(r.y0), int(r.x0), int(r.height), int(r.width), int(side), r.wcs,
                              f"#{int(r.rank)} score {r.score:.3g}") for r, side in zip(g.itertuples(), sides)]
            where = ("" if key == "0" else f" HDU {key}") + (f" plane {frame}" if cube else "")
            comments = [f"# cnnpipe: top anomalies in {source}{where}",
                        f"# {ds9_command(source, key, int(frame), cube, os.path.join(out_dir, name))}"]
            first, rest = _serialize(boxes).split("\n", 1)
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join([first, *(_CONTROL.sub("?", c) for c in comments), rest]), encoding="utf-8")
    return groups.ngroups
