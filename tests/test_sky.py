"""Sky coordinates: the WCS captured at ingest, tile centres in pixel and world coordinates."""
import json
import logging

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import corpus
from cnnpipe import config, ingest, sky
from cnnpipe.tables import read_frames
from cnnpipe.readers.base import Block
from cnnpipe.readers.fits import read_fits


def _tan_header() -> fits.Header:
    return fits.Header({"NAXIS": 2, "NAXIS1": 150, "NAXIS2": 100, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                        "CRPIX1": 40.0, "CRPIX2": 60.5, "CRVAL1": 150.1, "CRVAL2": 2.2, "CD1_1": -4.8e-5,
                        "CD1_2": 2.8e-5, "CD2_1": 2.8e-5, "CD2_2": 4.8e-5, "RADESYS": "ICRS"})


def test_capture_keeps_the_transform_exactly():
    header = _tan_header()
    text, problem = sky.capture(header, 100, 150)
    assert problem == "" and json.loads(text)["CTYPE1"] == "RA---TAN"
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-10, 160, 50), rng.uniform(-10, 110, 50)
    np.testing.assert_allclose(sky.parse(text).all_pix2world(x, y, 0), WCS(header).all_pix2world(x, y, 0),
                               rtol=0, atol=1e-10)


def test_capture_without_and_with_a_broken_wcs():
    assert sky.capture(fits.Header({"NAXIS": 2, "OBJECT": "x"}), 10, 10) == ("", "")
    text, problem = sky.capture(fits.Header({"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ", "CDELT1": 1e-4}), 10, 10)
    assert text == "" and problem.startswith("unusable WCS:") and "XYZ" in problem
    text, problem = sky.capture(fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL2": 95.0,
                                             "CDELT1": 1e-4, "CDELT2": 1e-4}), 10, 10)  # Dec 95: no sky
    assert text == "" and "unusable WCS" in problem


def test_tile_centres_are_one_based_and_match_astropy_to_a_micro_degree():
    header = _tan_header()
    text, _ = sky.capture(header, 100, 150)
    tiles = pd.DataFrame({"y0": [0, 36, 36, 0], "x0": [0, 0, 86, 48], "height": 100, "width": 150,
                          "wcs": [text, text, text, ""]})
    out = sky.tile_coordinates(tiles, 64)
    np.testing.assert_array_equal(out.x_image, [32.5, 32.5, 118.5, 80.5])  # x0 + (64 - 1) / 2 + 1
    np.testing.assert_array_equal(out.y_image, [32.5, 68.5, 68.5, 32.5])
    ra, dec = WCS(header).all_pix2world(out.x_image[:3], out.y_image[:3], 1)  # FITS 1-based origin
    np.testing.assert_allclose(out.x_world[:3], ra, atol=1e-6)
    np.testing.assert_allclose(out.y_world[:3], dec, atol=1e-6)
    assert out.world_axes[:3].tolist() == ["RA/DEC icrs"] * 3
    assert np.isnan(out.x_world[3]) and out.world_axes[3] == ""   # no WCS: pixel coordinates only


def test_a_padded_small_frame_centres_on_its_own_pixels():
    out = sky.tile_coordinates(pd.DataFrame({"y0": [0], "x0": [0], "height": [20], "width": [24], "wcs": [""]}), 64)
    assert (out.x_image[0], out.y_image[0]) == (12.5, 10.5)


def test_galactic_and_cube_headers():
    h = fits.Header({"NAXIS": 3, "NAXIS1": 30, "NAXIS2": 20, "NAXIS3": 4, "CTYPE1": "GLON-CAR",
                     "CTYPE2": "GLAT-CAR", "CTYPE3": "FREQ", "CDELT1": -0.01, "CDELT2": 0.01, "CRVAL3": 1e9,
                     "CDELT3": 1e6})
    text, problem = sky.capture(h, 20, 30)
    assert problem == ""
    out = sky.tile_coordinates(pd.DataFrame({"y0": [0], "x0": [0], "height": [20], "width": [30], "wcs": [text]}), 64)
    assert out.world_axes[0] == "GLON/GLAT galactic"
    lon, lat = WCS(h).sub(2).all_pix2world([15.5], [10.5], 1)
    assert out.x_world[0] == pytest.approx(lon[0], abs=1e-9) and out.y_world[0] == pytest.approx(lat[0], abs=1e-9)


def test_ingest_records_the_wcs_and_warns_about_a_broken_one(tmp_path, caplog):
    corpus.wcs_frames(tmp_path / "wcs")
    blocks = {p.name: [b for b in read_fits(str(p)) if isinstance(b, Block)][0] for p in (tmp_path / "wcs").iterdir()}
    assert blocks["tan.fits"].wcs and not blocks["tan.fits"].wcs_problem
    assert blocks["nowcs.fits"].wcs == "" and blocks["nowcs.fits"].wcs_problem == ""
    assert blocks["broken.fits"].wcs == "" and "XYZ" in blocks["broken.fits"].wcs_problem
    cfg = config.parse({"inputs": [str(tmp_path / "wcs")], "ingest": {"n_shards": 1}})
    with caplog.at_level(logging.WARNING):
        rows = ingest.ingest_shard(cfg, 0, tmp_path / "shard-0.h5")
    assert any("broken.fits" in r.message and "pixel coordinates only" in r.message for r in caplog.records)
    ingest.write_csv(rows, tmp_path / "manifest.csv")
    frames = read_frames(tmp_path / "manifest.csv", chunk_rows=3).set_index("source")   # several chunks
    assert len(frames) == 3
    assert frames.loc[str(tmp_path / "wcs/tan.fits"), "wcs"] != ""
    assert "XYZ" in frames.loc[str(tmp_path / "wcs/broken.fits"), "wcs_problem"]
    assert frames.loc[str(tmp_path / "wcs/nowcs.fits"), ["wcs", "wcs_problem"]].tolist() == ["", ""]


@pytest.mark.parametrize("small_frames", ["upsample", "pad"])
def test_the_tile_of_a_resampled_small_frame_centres_on_the_frame_centre_on_the_sky(tmp_path, small_frames):
    """A 32x32 FITS frame (64-pixel tiles): one tile whose sky centre is the frame's centre, whether the
    frame was resampled up (scale 2) or padded; a 32x48 frame's second tile centres on frame column 31.5."""
    header = _tan_header()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"square.fits": (32, 32), "wide.fits": (32, 48)}.items():
        fits.PrimaryHDU(rng.normal(100, 5, (h, w)).astype(np.float32), header=header).writeto(tmp_path / name)
    cfg = config.parse({"inputs": [str(tmp_path)], "ingest": {"n_shards": 1, "small_frames": small_frames}})
    ingest.write_csv(ingest.ingest_shard(cfg, 0, tmp_path / "shard-0.h5"), tmp_path / "manifest.csv")
    frames = read_frames(tmp_path / "manifest.csv")
    assert frames.scale.tolist() == ([2.0, 2.0] if small_frames == "upsample" else [1.0, 1.0])
    ranked = pd.read_csv(tmp_path / "manifest.csv", dtype={"key": str})[["source", "key", "frame", "y0", "x0"]]
    out = sky.add_coordinates(ranked, frames, 64).set_index(ranked.source.map(lambda s: s.rsplit("/", 1)[1]))
    square = out.loc["square.fits"]
    centre = WCS(header).pixel_to_world((32 - 1) / 2, (32 - 1) / 2)      # 0-based centre of the frame
    assert (square.x_image, square.y_image) == (16.5, 16.5)
    assert square.x_world == pytest.approx(centre.ra.deg, abs=1e-9)
    assert square.y_world == pytest.approx(centre.dec.deg, abs=1e-9)
    if small_frames == "upsample":
        wide = out.loc["wide.fits"]
        assert wide.x_image.tolist() == [16.5, 32.5] and wide.y_image.tolist() == [16.5, 16.5]
        second = WCS(header).pixel_to_world(31.5, 15.5)
        assert wide.x_world.iloc[1] == pytest.approx(second.ra.deg, abs=1e-9)
