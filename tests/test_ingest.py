"""Sharded ingestion: good files land in shards with the right pixels, bad ones are quarantined, writes are atomic."""
import h5py
import numpy as np
import pandas as pd
import pytest

import corpus
from cnnpipe import config, ingest
from cnnpipe.normalise import normalise
from cnnpipe.tiling import tile_starts, tiles


def _cfg(inputs, **ingest_over):
    return config.parse({"inputs": inputs, "ingest": {"n_shards": 3, "tile_size": 16, "tile_overlap": 4,
                                                      "normalise": {"method": "zscore"}, **ingest_over}})


def _run(cfg, out):
    parts = []
    for s in range(cfg.ingest.n_shards):
        rows = ingest.ingest_shard(cfg, s, out / f"shard-{s}.h5")
        ingest.write_csv(rows, out / f"manifest-{s}.csv")
        parts.append(out / f"manifest-{s}.csv")
    return ingest.merge_manifests(parts, out / "manifest.csv")


def test_good_and_bad_in_one_run(corpus_dir, tmp_path):
    cfg = _cfg([str(corpus_dir / "good"), str(corpus_dir / "bad"), str(tmp_path / "missing.fits")])
    df = _run(cfg, tmp_path)
    assert list(df.columns)[:9] == ["source", "key", "index", "shard", "row", "height", "width", "status", "reason"]
    reasons = corpus.bad(tmp_path / "expect")
    q = df[df.status == "quarantined"]
    for name, why in reasons.items():
        rows = q[q.source.str.endswith("/" + name)]
        assert len(rows) >= 1, name
        assert why.lower() in rows.reason.iloc[0].lower(), (name, rows.reason.iloc[0])
    assert q[q.source.str.endswith("missing.fits")].reason.tolist() == ["path does not exist"]
    ok = df[df.status == "ok"]
    good = corpus.good(tmp_path / "expect_good")
    frames_per_file = ok.groupby("source").apply(lambda g: len(set(zip(g.key, g.frame))))
    for name, frames in good.items():
        assert frames_per_file[[s for s in frames_per_file.index if s.endswith("/" + name)][0]] == len(frames)
    # every ok row points at a real shard row, and shard row counts add up
    total = sum(h5py.File(tmp_path / f"shard-{s}.h5")["frames"].shape[0] for s in range(3))
    assert total == len(ok) and set(ok.shard) == {0, 1, 2}


def test_shard_pixels_equal_normalised_tiles(corpus_dir, tmp_path):
    cfg = _cfg([str(corpus_dir / "good" / "single.fits")], n_shards=1)
    df = _run(cfg, tmp_path)
    image = corpus.good(tmp_path / "g")["single.fits"][0]  # 20 x 24 -> tiles of 16 with overlap 4
    norm, offset, scale = normalise(image, "zscore")
    assert offset == pytest.approx(image.mean(), rel=1e-5) and scale == pytest.approx(image.std(), rel=1e-5)
    expected = list(tiles(norm, 16, 4))
    assert [(y, x) for y, x, _ in expected] == [(0, 0), (0, 8), (4, 0), (4, 8)]
    with h5py.File(tmp_path / "shard-0.h5") as f:
        stored = f["frames"][:]
    assert len(df) == 4 and df["index"].tolist() == [0, 1, 2, 3] and df.y0.tolist() == [0, 0, 4, 4]
    for (_, _, tile), got in zip(expected, stored):
        np.testing.assert_allclose(got, tile, rtol=1e-6)


def test_small_frames_are_padded_with_mask(tmp_path):
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    (y0, x0, t), = tiles(img, 8, 2)
    assert t.shape == (8, 8) and np.isnan(t[3:]).all() and np.isnan(t[:, 4:]).all()
    np.testing.assert_array_equal(t[:3, :4], img)


def test_tile_starts_cover_edges():
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(128, 64, 16) == [0, 48, 64]
    assert tile_starts(100, 64, 0) == [0, 36]


def test_normalise_methods():
    img = np.linspace(0, 99, 100, dtype=np.float32).reshape(10, 10)
    img[0, 0] = np.nan
    p, lo, scale = normalise(img, "percentile", (0, 100))
    assert np.isnan(p[0, 0]) and p[0, 1] == 0.0 and p[-1, -1] == 1.0 and lo == 1.0 and scale == 98.0
    a, _, _ = normalise(img, "asinh", (0, 100), 0.1)
    assert a[-1, -1] == pytest.approx(1.0) and a[5, 0] > p[5, 0]  # asinh lifts the faint middle
    with pytest.raises(ValueError, match="all pixels"):
        normalise(np.full((4, 4), np.inf), "percentile")


def test_all_bad_inputs_stop_with_clear_error(corpus_dir, tmp_path):
    cfg = _cfg([str(corpus_dir / "bad")])
    with pytest.raises(ValueError, match="no usable frames in any input"):
        _run(cfg, tmp_path)
    assert not (tmp_path / "manifest.csv").exists()


def test_interrupted_shard_leaves_nothing(corpus_dir, tmp_path, monkeypatch):
    cfg = _cfg([str(corpus_dir / "good")], n_shards=1)
    calls = {"n": 0}
    real = ingest.prepare

    def failing(images, c, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(images, c, **kw)

    monkeypatch.setattr(ingest, "prepare", failing)
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest_shard(cfg, 0, tmp_path / "shard-0.h5")
    assert list(tmp_path.iterdir()) == []


def test_non_utf8_file_name_round_trips(tmp_path):
    import os
    from astropy.io import fits

    name = os.fsdecode(b"caf\xe9.fits")
    fits.PrimaryHDU(np.ones((8, 8), np.float32) + np.eye(8, dtype=np.float32)).writeto(tmp_path / name)
    cfg = _cfg([str(tmp_path)], n_shards=1)
    df = _run(cfg, tmp_path / "out")
    assert df.source.iloc[0] == str(tmp_path / "caf\\xe9.fits") and df.status.iloc[0] == "ok"


def test_index_is_unique_and_independent_of_sharding(corpus_dir, tmp_path):
    """(source, key, index) names one tile everywhere, however the HDF5 frame ranges fall into shards."""
    inputs = [str(corpus_dir / "good" / "stack.h5"), str(corpus_dir / "good" / "cube.fits.gz")]
    one = _run(_cfg(inputs, n_shards=1), tmp_path / "one")
    three = _run(_cfg(inputs, n_shards=3), tmp_path / "three")
    ids = ["source", "key", "index", "frame", "y0", "x0"]
    assert not one.duplicated(["source", "key", "index"]).any()
    pd.testing.assert_frame_equal(one[ids].sort_values(ids).reset_index(drop=True),
                                  three[ids].sort_values(ids).reset_index(drop=True))
    # 20x24 frames cut into 16-pixel tiles with overlap 4: 4 tiles per frame, index = frame * 4 + tile
    stack = one[one.source.str.endswith("stack.h5")]
    assert stack["index"].tolist() == list(range(20)) and stack.frame.tolist() == [i // 4 for i in range(20)]


@pytest.mark.parametrize("side", [64, 100, 40])  # one tile, overlapping tiles, a padded frame
def test_prepare_in_place_gives_the_same_tiles_and_leaves_a_callers_array_alone(side):
    cfg = config.parse({"ingest": {"tile_size": 64, "tile_overlap": 16}})
    x = np.random.default_rng(side).normal(1000.0, 30.0, (3, side, side)).astype(np.float32)
    x[1] = np.nan  # an unusable frame: the others are a selection (a copy)
    before = x.copy()
    tiles, stats, where, usable = ingest.prepare(x, cfg)
    np.testing.assert_array_equal(x, before)
    again = ingest.prepare(x.copy(), cfg, overwrite=True)
    np.testing.assert_array_equal(again[0], tiles)
    np.testing.assert_array_equal(again[2], where)
    assert usable.tolist() == [True, False, True] and 0.0 <= np.nanmin(tiles) and np.nanmax(tiles) <= 1.0


# ---- frames smaller than the tile (ingest.small_frames) ---------------------------------------------------
def _write(path, frames, kind):
    """``frames`` (n, h, w) as one HDF5 dataset or one FITS file per frame; the inputs to give ingest."""
    if kind == "h5":
        with h5py.File(path / "small.h5", "w") as f:
            f["images"] = frames
        return [str(path / "small.h5")]
    from astropy.io import fits
    for i, frame in enumerate(frames):
        fits.PrimaryHDU(frame).writeto(path / f"small-{i}.fits")
    return [str(path / f"small-{i}.fits") for i in range(len(frames))]


def _ingest_small(tmp_path, frames, kind="h5", **over):
    """Ingest ``frames`` at the default 64-pixel tile (overlap 16): (manifest ok rows, stored tiles, stats)."""
    cfg = config.parse({"inputs": _write(tmp_path, frames, kind), "ingest": {
        "n_shards": 1, "normalise": {"method": "percentile"}, **over}})
    df = _run(cfg, tmp_path)
    with h5py.File(tmp_path / "shard-0.h5") as f:
        stored = {k: f[k][:] for k in ("frames", "sharpness", "coldness")}
    return df[df.status == "ok"].reset_index(drop=True), stored


def _expected_resample(frame, shape):
    from skimage.transform import resize
    return resize(normalise(frame, "percentile")[0], shape, order=1, anti_aliasing=False, mode="edge")


@pytest.mark.parametrize("kind", ["h5", "fits"])
def test_a_32_pixel_frame_is_resampled_to_one_tile_without_mask(tmp_path, kind):
    from cnnpipe.preprocess import features
    import torch

    frame = np.random.default_rng(0).normal(100.0, 5.0, (1, 32, 32)).astype(np.float32)
    ok, stored = _ingest_small(tmp_path, frame, kind)
    assert len(ok) == 1 and (ok.y0[0], ok.x0[0], ok.height[0], ok.width[0], ok.scale[0]) == (0, 0, 32, 32, 2.0)
    assert stored["frames"].shape == (1, 64, 64)
    np.testing.assert_allclose(stored["frames"][0], _expected_resample(frame[0], (64, 64)), rtol=1e-6, atol=1e-7)
    _, valid = features(torch.from_numpy(stored["frames"]))
    assert float(1.0 - valid.mean()) == 0.0        # the `masked` component: nothing is padding
    # pad (the old behaviour): the same frame is 75% mask
    (tmp_path / "pad").mkdir()
    ok_pad, pad = _ingest_small(tmp_path / "pad", frame, kind, small_frames="pad")
    assert ok_pad.scale[0] == 1.0 and float(1.0 - features(torch.from_numpy(pad["frames"]))[1].mean()) == 0.75


def test_a_32x48_frame_gives_overlapping_tiles_at_original_pixel_positions(tmp_path):
    frame = np.random.default_rng(1).normal(100.0, 5.0, (1, 32, 48)).astype(np.float32)
    frame[0, 20, 40] += 400.0     # a hot pixel, only in the second tile (frame columns 16..47)
    frame[0, 5, 3] -= 400.0       # a dead pixel, only in the first (columns 0..31)
    ok, stored = _ingest_small(tmp_path, frame)
    # 32x48 -> 64x96; tiles of 64 at model columns 0 and 32 = frame columns 0 and 16, 32 frame pixels a side
    assert ok["index"].tolist() == [0, 1] and ok.y0.tolist() == [0, 0] and ok.x0.tolist() == [0, 16]
    assert ok.scale.tolist() == [2.0, 2.0] and ok.height.tolist() == [32, 32] and ok.width.tolist() == [48, 48]
    up = _expected_resample(frame[0], (64, 96))
    np.testing.assert_allclose(stored["frames"], [up[:, :64], up[:, 32:]], rtol=1e-6, atol=1e-7)
    # the outlier stats are measured on the original pixels, over each tile's area of the frame
    from cnnpipe.pixel_outliers import outlier_maps
    maps = outlier_maps(frame, config.parse({}).ingest.sharpness_relative)
    for s in ("sharpness", "coldness"):
        want = [np.nanmax(maps[s][0, :, x0:x0 + 32]) for x0 in (0, 16)]
        np.testing.assert_allclose(stored[s], np.maximum(want, 0), rtol=1e-5)
    assert stored["sharpness"][1] > 8 > 3 > stored["sharpness"][0]   # the hit: 400 / (5.45 + 0.1 x 400) = 8.8
    assert stored["coldness"][0] > 50 > stored["coldness"][1]


def test_a_frame_of_a_non_integer_scale_keeps_its_edges(tmp_path):
    frame = np.random.default_rng(2).normal(100.0, 5.0, (1, 40, 50)).astype(np.float32)
    ok, stored = _ingest_small(tmp_path, frame)
    # scale 64 / 40 = 1.6: 64x80, tiles at model columns 0 and 16 = frame columns 0 and 10 (10 + 40 = 50)
    assert ok.x0.tolist() == [0, 10] and ok.scale[0] == pytest.approx(1.6)
    up = _expected_resample(frame[0], (64, 80))
    np.testing.assert_allclose(stored["frames"], [up[:, :64], up[:, 16:]], rtol=1e-6, atol=1e-7)


def test_a_masked_pixel_of_a_small_frame_stays_masked_in_its_tile(tmp_path):
    frame = np.random.default_rng(3).normal(100.0, 5.0, (1, 32, 32)).astype(np.float32)
    frame[0, 5, 7] = np.nan
    _, stored = _ingest_small(tmp_path, frame)
    tile = stored["frames"][0]
    # nearest-pixel mask: the masked pixel's own 2x2 block, the frame's masked share (1 / 1024) unchanged
    assert np.argwhere(np.isnan(tile)).tolist() == [[10, 14], [10, 15], [11, 14], [11, 15]]
    # its neighbours are interpolated from the unmasked pixels only: a constant frame stays constant
    flat = np.full((1, 32, 32), 7.0, np.float32)
    flat[0, 5, 7] = np.nan
    flat[0, 20:, :] = 9.0
    from cnnpipe.tiling import upsample
    up = upsample(flat, (64, 64))[0]
    assert np.isnan(up[10:12, 14:16]).all() and np.nanmax(up[:38]) == 7.0 and up[0, 0] == 7.0


def test_pad_mode_reproduces_the_padded_tiles(tmp_path):
    import legacy_kernels as legacy
    from cnnpipe.pixel_outliers import outlier_peaks

    frame = np.random.default_rng(4).normal(100.0, 5.0, (2, 32, 48)).astype(np.float32)
    frame[1, 3, 3] = np.nan
    ok, stored = _ingest_small(tmp_path, frame, small_frames="pad")
    assert ok.x0.tolist() == [0, 0] and ok.scale.tolist() == [1.0, 1.0]
    want = [t for f in frame for _, _, t in legacy.tiles(normalise(f, "percentile")[0], 64, 16)]
    np.testing.assert_array_equal(stored["frames"], want)
    peaks = outlier_peaks(frame, [0], [0], 64, config.parse({}).ingest.sharpness_relative)
    np.testing.assert_array_equal(stored["sharpness"], peaks["sharpness"].reshape(-1))
    np.testing.assert_array_equal(stored["coldness"], peaks["coldness"].reshape(-1))


def test_all_nan_small_frames_are_quarantined_and_the_others_resampled(tmp_path):
    frames = np.random.default_rng(5).normal(100.0, 5.0, (3, 32, 32)).astype(np.float32)
    frames[1] = np.nan
    cfg = config.parse({"inputs": _write(tmp_path, frames, "h5"), "ingest": {"n_shards": 1}})
    df = _run(cfg, tmp_path).sort_values("index", ignore_index=True)
    assert df.status.tolist() == ["ok", "quarantined", "ok"] and "all pixels are NaN" in df.reason[1]
    assert df[df.status == "ok"].scale.tolist() == [2.0, 2.0]
    (tmp_path / "one").mkdir()
    cfg = config.parse({"inputs": _write(tmp_path / "one", frames[1:2], "h5"), "ingest": {"n_shards": 1}})
    only = ingest.ingest_shard(cfg, 0, tmp_path / "one" / "shard-0.h5")     # a batch with no usable frame
    assert only.status.tolist() == ["quarantined"]


def test_frames_below_min_frame_side_are_still_quarantined(tmp_path):
    cfg = config.parse({"inputs": _write(tmp_path, np.ones((2, 6, 40), np.float32), "h5"),
                        "ingest": {"n_shards": 1}})
    df = ingest.ingest_shard(cfg, 0, tmp_path / "shard-0.h5")
    assert df.status.tolist() == ["quarantined"] and "min_frame_side" in df.reason[0]
