"""The detection suite's generators, files, split and metrics do what benchmarks/suite/ says they do.

These test the benchmark's claims (a trail frame has a line of raised pixels at the stated angle, a dead
column reads bias only, the truth table matches the files, dev and held-out are disjoint), not cnnpipe.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.suite import (digits, metrics, sky_galaxies, sky_m13, sky_ngc1316, split, tracks_helix,  # noqa: E402
                              tracks_strips)
from benchmarks.suite.files import read_frames, write_fits_folder, write_hdf5  # noqa: E402


@pytest.fixture(scope="module")
def m13():
    return sky_m13.generate(150, 0.2, seed=7)


def _of(truth, cls):
    rows = truth[truth.cls == cls]
    assert len(rows), f"no {cls} frame drawn"
    return rows


def _line_median(img, point, angle_deg):
    """Median of the pixels nearest to the line through ``point`` (row, col) at ``angle_deg``."""
    t = np.deg2rad(angle_deg)
    s = np.arange(-100, 100, 0.5)
    rows, cols = np.rint(point[0] - s * np.sin(t)).astype(int), np.rint(point[1] + s * np.cos(t)).astype(int)
    inside = (rows >= 0) & (rows < img.shape[0]) & (cols >= 0) & (cols < img.shape[1])
    return float(np.median(img[rows[inside], cols[inside]]))


def test_m13_truth_counts_and_classes(m13):
    frames, truth = m13
    assert frames.shape == (150, 64, 64) and len(truth) == 150
    assert truth.label.sum() == 30 == (truth.cls != "normal").sum()
    assert set(truth.cls) - {"normal"} == set(sky_m13.CLASSES)


def test_m13_trail_is_a_raised_line_along_the_stated_angle(m13):
    frames, truth = m13
    sig_adu = sky_m13.sky_sigma() / sky_m13.GAIN
    for _, row in _of(truth, "satellite_trail").iterrows():
        d = json.loads(row.detail)
        img = frames[row.frame]
        peak_adu = d["peak_sigma"] * sig_adu
        along = _line_median(img, d["point"], d["angle"]) - np.median(img)
        across = _line_median(img, d["point"], d["angle"] + 90) - np.median(img)
        assert along > 0.5 * peak_adu - 2 * sig_adu, (d, along)
        assert across < along - 0.3 * peak_adu + 2 * sig_adu, (d, along, across)


def test_m13_dead_column_reads_bias_far_below_the_median(m13):
    frames, truth = m13
    sig_adu = sky_m13.sky_sigma() / sky_m13.GAIN
    for _, row in _of(truth, "dead_column").iterrows():
        img = frames[row.frame]
        col = img[:, json.loads(row.detail)["col"]]
        assert np.median(col) < np.median(img) - 10 * sig_adu
        assert abs(np.median(col) - sky_m13.BIAS_ADU) < 3 * sky_m13.READ_NOISE_E / sky_m13.GAIN
    col = np.median(frames[truth.cls == "normal"], axis=1)                  # (frames, columns)
    drop = col[:, 1:-1] - (col[:, :-2] + col[:, 2:]) / 2                     # against its neighbours
    assert drop.min() > -5 * sig_adu        # no normal frame has a dead column


def test_m13_flat_field_has_no_stars_and_a_high_level(m13):
    from scipy import ndimage

    frames, truth = m13
    normal_median = np.median(frames[truth.cls == "normal"])
    for f in _of(truth, "flat_field").frame:
        img = frames[f].astype(np.float64)
        assert np.median(img) > normal_median + 1000
        photon_adu = np.sqrt((np.median(img) - sky_m13.BIAS_ADU) * sky_m13.GAIN) / sky_m13.GAIN
        assert np.abs(img - ndimage.uniform_filter(img, 9)).max() < 6 * photon_adu      # nothing but noise


def test_m13_bleed_saturates_a_column_run(m13):
    frames, truth = m13
    for _, row in _of(truth, "saturation_bleed").iterrows():
        d = json.loads(row.detail)
        sat = (sky_m13.BIAS_ADU + sky_m13.FULL_WELL_E / sky_m13.GAIN) * 0.95
        run = frames[row.frame][:, d["col"]] > sat
        assert run.sum() >= 5                       # a vertical run of saturated pixels
        assert (frames[truth.cls == "normal"] > sat).sum() == 0


def test_ngc1316_hot_column_and_other_instrument():
    frames, truth = sky_ngc1316.generate(150, 0.2, seed=3)
    sig = sky_ngc1316.frame_sigma()
    for _, row in _of(truth, "hot_column").iterrows():
        d = json.loads(row.detail)
        img = frames[row.frame]
        raised = np.median(img[: d["to_row"], d["col"]]) - np.median(img[: d["to_row"]])
        assert raised > 2 * sig
    other = frames[_of(truth, "other_instrument").frame]
    assert np.all(np.abs(np.median(other, axis=(1, 2)) - 3204) < 100)      # the Apogee frame's own level
    assert np.abs(np.median(frames[truth.cls == "normal"], axis=(1, 2))).max() < 400


def test_galaxies_trail_crosses_the_large_galaxy_and_hot_column_is_raised():
    """Every frame holds a large Sersic galaxy; a trail passes within one effective radius of its centre and
    is a raised line along its angle; a hot column stands above the frame's median over its whole length."""
    frames, truth = sky_galaxies.generate(120, 0.25, seed=5)
    assert set(truth.cls) - {"normal"} == set(sky_galaxies.CLASSES)
    sig = sky_galaxies.sky_sigma() / sky_galaxies.GAIN
    for _, row in _of(truth, "satellite_trail").iterrows():
        d = json.loads(row.detail)
        g = d["galaxy"]
        centre = np.clip([g["y_0"], g["x_0"]], 4, 60)
        assert np.all(np.abs(np.array(d["point"]) - centre) <= g["r_eff"] + 1e-9)
        img = frames[row.frame]
        along = _line_median(img, d["point"], d["angle"])
        across = _line_median(img, d["point"], d["angle"] + 90)
        assert along > across + 0.3 * d["peak_sigma"] * sig - 2 * sig, (d, along, across)
    for _, row in _of(truth, "hot_column").iterrows():
        d = json.loads(row.detail)
        img = frames[row.frame]
        assert np.median(img[:, d["col"]]) - np.median(img) > 0.5 * d["sigma"] * sig
    normal = truth.cls == "normal"
    assert np.all([json.loads(x)["galaxy"]["r_eff"] >= 6 for x in truth.detail[normal]])


def test_galaxy_core_is_no_sharper_than_the_psf():
    """A de Vaucouleurs core seen through the PSF falls off from its peak no faster than a point source does
    (1 - exp(-1 / (2 sigma^2)) of the peak at the next pixel); evaluated at pixel centres alone it would."""
    class Fixed:  # draws that put an n = 4 galaxy of r_eff 6 on a pixel centre
        def uniform(self, lo, hi):
            return {(-0.0, 64.0): 32.0, (6.0, 20.0): 6.0, (0.8, 4.0): 4.0}.get((lo, hi), lo)
    img, shape = sky_galaxies._galaxy(Fixed(), 64, (6.0, 20.0), (1.0, 10.0), 0.0)
    assert (shape["x_0"], shape["y_0"], shape["n"]) == (32.0, 32.0, 4.0)
    neighbours = np.array([img[31, 32], img[33, 32], img[32, 31], img[32, 33]])
    point_source = 1 - np.exp(-1 / (2 * sky_galaxies.PSF_SIGMA ** 2))
    assert 0 < 1 - neighbours.max() / img[32, 32] <= point_source
    assert img.argmax() == 32 * 64 + 32


def test_strips_dead_channels_and_pileup():
    frames, truth = tracks_strips.generate(150, 0.2, seed=3)
    assert np.all(frames[:, :, list(tracks_strips.DEAD_COLUMNS)] == 0)
    assert np.all((frames == 0) | (frames >= tracks_strips.THRESHOLD))        # zero suppression
    hits = (frames > 0).sum(axis=(1, 2))
    assert hits[_of(truth, "pileup").frame].min() > np.median(hits[truth.cls == "normal"]) * 2


def test_strips_stub_charge_rises_towards_its_end():
    img = np.zeros((48, 48))
    tracks_strips.segment(img, 24, 5, 24, 40, np.random.default_rng(0), bragg=True)
    row = img[24]
    assert row[30:40].mean() > 2 * row[5:15].mean()


def test_helix_tracks_start_at_the_vertex_and_anomalies_add_structure():
    frames, truth = tracks_helix.generate(150, 0.2, seed=3)
    normal = frames[truth.cls == "normal"]
    centre = normal[:, 29:35, 29:35].sum(axis=(1, 2))
    assert np.median(centre) > 2                    # 2-7 tracks leave charge around the beam spot
    for _, row in _of(truth, "two_prong").iterrows():
        d = json.loads(row.detail)
        assert 8 <= np.hypot(*np.subtract(d["decay_vertex"], d["vertex"])) <= 20     # flight of the neutral
    charge = frames.sum(axis=(1, 2))
    for cls in ("shower", "pileup"):
        assert np.median(charge[_of(truth, cls).frame]) > np.median(charge[truth.cls == "normal"])


def test_anomalies_placed_along_a_track_lie_inside_the_frame():
    """A kink, delta ray or shower outside the frame would be labelled anomalous with nothing to see."""
    for module, classes in ((tracks_helix, ("kink", "delta_ray", "shower")), (tracks_strips, ("kink", "shower"))):
        _, truth = module.generate(400, 0.4, seed=5)
        points = [json.loads(d).get("at", json.loads(d).get("start")) for d in truth.detail[truth.cls.isin(classes)]]
        assert len(points) >= 3 * len(classes)
        assert np.all((np.array(points) >= 0) & (np.array(points) <= module.SIZE - 1)), module.__name__


def test_strip_track_path_inside_the_frame_by_hand():
    assert tracks_strips._inside_length(0, 10, 0.0, 48) == 47                            # straight down
    assert np.isclose(tracks_strips._inside_length(0, 0, np.pi / 4, 48), 47 * np.sqrt(2))  # corner to corner
    assert np.isclose(tracks_strips._inside_length(0, 40, np.pi / 6, 48), 7 / 0.5)       # out of the side
    assert tracks_strips._inside_length(0, 47.5, 0.3, 48) == 0                            # enters beyond it


def test_files_round_trip_and_truth_ids(tmp_path):
    frames, truth = tracks_strips.generate(20, 0.2, seed=1)
    t_h5 = write_hdf5(tmp_path, "data/events.h5", frames, truth)
    np.testing.assert_array_equal(read_frames(tmp_path, t_h5), frames)
    assert set(t_h5.key) == {"/events"} and list(t_h5.frame) == list(range(20))
    t_fits = write_fits_folder(tmp_path, "data/sky", frames, truth)
    assert len(list((tmp_path / "data" / "sky").glob("*.fits"))) == 20 == len(t_fits)
    np.testing.assert_array_equal(read_frames(tmp_path, t_fits), frames)
    assert t_fits.label.sum() == t_h5.label.sum() == 5      # 20 x 0.2 = 4, but at least one per class (5)


def test_split_is_disjoint_and_held_out_families_have_no_dev_run():
    split.check_disjoint()
    dev = {(r.family, r.seed) for r in split.RUNS if r.split == split.DEV}
    held = {(r.family, r.seed) for r in split.RUNS if r.split == split.HELD_OUT}
    assert dev.isdisjoint(held) and len(held) >= 5
    assert {"sky_ngc1316", "tracks_strips"} <= {f for f, _ in held} - {f for f, _ in dev}
    extra = {(r.family, r.seed) for r in split.EXTRA_DEV}
    assert extra.isdisjoint(held) and all(r.split == split.DEV for r in split.EXTRA_DEV)
    assert len({r.name for r in split.RUNS + split.EXTRA_DEV}) == len(split.RUNS) + len(split.EXTRA_DEV)
    with pytest.raises(ValueError):
        split.check_disjoint([split.Run("sky_m13", 1, split.DEV), split.Run("sky_m13", 1, split.HELD_OUT)])
    a, b = digits.half_indices(0), digits.half_indices(1)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 1797


def test_digits_protocols():
    images, truth = digits.one_vs_rest(3, half=1, seed=0)
    odd = truth[truth.label == 1]
    assert sorted(odd.cls) == [f"digit_{d}" for d in range(10) if d != 3]
    used = [json.loads(d)["image"] for d in truth.detail]
    assert set(used) <= set(digits.half_indices(1))
    images, truth = digits.six_vs_nine(half=0, seed=0)
    assert set(truth.cls[truth.label == 1]) == {"digit_9"}
    assert 0.02 < truth.label.mean() < 0.04
    up = digits.upsample(images[:2])
    assert up.shape == (2, digits.UPSAMPLE, digits.UPSAMPLE) and 0 <= up.min() and up.max() <= 1


def test_metrics_on_a_hand_example():
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.05, 0.6])
    cls = np.array(["a", "normal", "b", "normal", "b", "normal"])
    m = metrics.evaluate(score, cls)
    # anomalies at ranks 1, 3, 6 (scores 0.9, 0.7, 0.05): AP = (1/1 + 2/3 + 3/6) / 3
    assert m["ap"] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    # 9 (anomaly, normal) pairs; 0.9 beats 3, 0.7 beats 2 (0.1, 0.6), 0.05 beats 0 -> 5/9
    assert m["auroc"] == pytest.approx(5 / 9)
    # k = 3 -> top 6 holds everything; with factor 1 (top 3): a in, one b of two
    assert m["recall"] == {"a": 1.0, "b": 1.0}
    assert metrics.recall_in_top(score, cls, factor=1) == {"a": 1.0, "b": 0.5}


def test_ap_ratio_interval():
    """The same ranking on both sides: every resample's ratio is exactly 1. A ranking that puts the 10
    anomalies first against one that puts them last: AP 1 against about k / n on every resample, so the whole
    interval lies far above 1."""
    cls = np.array(["normal"] * 90 + ["a"] * 10)
    perfect = np.r_[np.zeros(90), np.ones(10)]
    assert metrics.ap_ratio_interval(perfect, perfect, cls, resamples=50) == (1.0, 1.0)
    lo, hi = metrics.ap_ratio_interval(perfect, -perfect, cls, resamples=50)
    assert 5 < lo <= hi < 15
