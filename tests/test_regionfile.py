"""DS9 region files: one per FITS frame, one box per top-ranked tile, sky boxes where there is a WCS."""
import re

import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from regions import RectanglePixelRegion, RectangleSkyRegion, Regions

from cnnpipe import sky
from cnnpipe.regionfile import region_name, write_regions

TAN = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 40.0, "CRPIX2": 60.5, "CRVAL1": 150.1,
                   "CRVAL2": 2.2, "CD1_1": -4.8e-5, "CD1_2": 2.8e-5, "CD2_1": 2.8e-5, "CD2_2": 4.8e-5})


@pytest.fixture
def written(tmp_path):
    text, _ = sky.capture(TAN, 100, 150)
    frames = pd.DataFrame([
        ("data/n1/tan.fits", "0", 0, 100, 150, text),
        ("data/n1/plain.fits.fz", "1", 0, 90, 90, ""),
        ("data/n2/cube.fits", "0", 0, 64, 64, ""), ("data/n2/cube.fits", "0", 1, 64, 64, ""),
        ("data/events.h5", "/events", 3, 64, 64, ""),
    ], columns=["source", "key", "frame", "height", "width", "wcs"])
    top = pd.DataFrame([
        ("data/n1/tan.fits", "0", 0, 0, 48, 3.0, 1), ("data/n1/plain.fits.fz", "1", 0, 26, 26, 2.5, 2),
        ("data/events.h5", "/events", 3, 0, 0, 2.0, 3), ("data/n1/tan.fits", "0", 0, 36, 86, 1.5, 4),
        ("data/n2/cube.fits", "0", 1, 0, 0, 1.0, 5),
    ], columns=["source", "key", "frame", "y0", "x0", "score", "rank"])
    out = tmp_path / "regions"
    n = write_regions(top, frames, 64, out)
    return n, out, top, frames


def test_names_mirror_the_inputs_below_their_common_folder(written):
    n, out, _, _ = written
    assert n == 3   # the HDF5 frame has no file: DS9 does not read HDF5
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.reg")) == [
        "n1/plain.hdu1.reg", "n1/tan.reg", "n2/cube.plane1.reg"]
    assert region_name("/a/b/x.fits.gz", "0", 0, "/a", False) == "b/x.reg"
    # too deep to mirror (a hostile input 1200 folders down): a flat name, one per path
    deep = "/a/" + "d/" * 40
    flat = region_name(deep + "x.fits", "1", 0, "/a", False)
    assert re.fullmatch(r"x-[0-9a-f]{12}\.hdu1\.reg", flat)
    assert region_name(deep + "e/x.fits", "1", 0, "/a", False) != flat


def test_sky_boxes_for_a_wcs_frame_match_the_csv_coordinates(written):
    _, out, top, frames = written
    regs = Regions.read(out / "n1/tan.reg", format="ds9")
    assert len(regs) == 2 and all(isinstance(r, RectangleSkyRegion) for r in regs)   # one box per top tile
    mine = top[top.source == "data/n1/tan.fits"].merge(frames, on=["source", "key", "frame"])
    coords = sky.tile_coordinates(mine, 64)
    for r, (_, c) in zip(regs, coords.iterrows()):
        assert r.center.ra.deg == pytest.approx(c.x_world, abs=1e-6)
        assert r.center.dec.deg == pytest.approx(c.y_world, abs=1e-6)
        ra, dec = WCS(TAN).all_pix2world([c.x_image], [c.y_image], 1)
        assert r.center.ra.deg == pytest.approx(ra[0], abs=1e-6) and r.center.dec.deg == pytest.approx(dec[0], abs=1e-6)
        assert r.width.to_value("arcsec") == pytest.approx(64 * 0.2, rel=1e-3)   # 64 px of 0.2 arcsec
        back = r.to_pixel(WCS(TAN))                                             # the tile, as a pixel box
        assert back.center.x == pytest.approx(c.x_image - 1, abs=1e-3) and back.width == pytest.approx(64, rel=1e-3)
    assert [r.meta["text"] for r in regs] == ["#1 score 3", "#4 score 1.5"]


def test_pixel_boxes_without_wcs_and_the_ds9_command(written):
    _, out, _, _ = written
    text = (out / "n1/plain.hdu1.reg").read_text()
    assert text.splitlines()[0].startswith("# Region file format: DS9")
    assert "# ds9 'data/n1/plain.fits.fz[1]' -regions " in text and "global" not in text
    (box,) = Regions.read(out / "n1/plain.hdu1.reg", format="ds9")
    assert isinstance(box, RectanglePixelRegion) and box.meta["text"] == "#2 score 2.5"
    assert (box.center.x, box.center.y, box.width, box.height) == (26 + 31.5, 26 + 31.5, 64, 64)  # 0-based centre
    (box,) = Regions.read(out / "n2/cube.plane1.reg", format="ds9")
    assert isinstance(box, RectanglePixelRegion) and "-cube 2" in (out / "n2/cube.plane1.reg").read_text()


def test_rewrite_replaces_the_folder(written, tmp_path):
    _, out, top, frames = written
    write_regions(top.head(1), frames, 64, out)
    assert [p.name for p in out.rglob("*.reg")] == ["tan.reg"]
    assert not list(tmp_path.glob("regions.tmp-*"))
    assert len(Regions.read(out / "n1/tan.reg", format="ds9")) == 1


def test_boxes_of_a_resampled_small_frame_are_in_its_own_pixels(tmp_path):
    """A 32x48 frame resampled up by 2 at ingest (64-pixel tiles): its tiles are 32 frame pixels a side."""
    text, _ = sky.capture(TAN, 32, 48)
    frames = pd.DataFrame([("data/wide.fits", "0", 0, 32, 48, 2.0, ""), ("data/sky.fits", "0", 0, 32, 48, 2.0, text)],
                          columns=["source", "key", "frame", "height", "width", "scale", "wcs"])
    top = pd.DataFrame([("data/wide.fits", "0", 0, 0, 16, 2.0, 1), ("data/sky.fits", "0", 0, 0, 16, 1.0, 2)],
                       columns=["source", "key", "frame", "y0", "x0", "score", "rank"])
    write_regions(top, frames, 64, tmp_path / "regions")
    (box,) = Regions.read(tmp_path / "regions/wide.reg", format="ds9")
    assert (box.center.x, box.center.y, box.width, box.height) == (16 + 15.5, 15.5, 32, 32)
    (sky_box,) = Regions.read(tmp_path / "regions/sky.reg", format="ds9")
    back = sky_box.to_pixel(WCS(TAN))
    assert back.center.x == pytest.approx(31.5, abs=1e-3) and back.width == pytest.approx(32, rel=1e-3)
