"""Pixel outliers on raw values: a hot pixel scores its height in noise units, a star core far less; a dead
column is cold; ingestion keeps what normalisation clips."""
import numpy as np
import pytest

from cnnpipe import config
from cnnpipe.ingest import prepare
from cnnpipe.pixel_outliers import STATS, median8, outlier_maps


def sharpness_map(images):
    return outlier_maps(images)["sharpness"]

SIGMA = 10.0


def noise_frame(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).normal(1000.0, SIGMA, (size, size)).astype(np.float32)


def star(size: int, y: int, x: int, peak: float, psf_sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * psf_sigma ** 2))).astype(np.float32)


def test_median8_equals_scipys_ring_median_filter():
    from scipy import ndimage

    ring = np.ones((1, 3, 3), bool)
    ring[0, 1, 1] = False
    x = np.random.default_rng(5).normal(0, 1, (3, 17, 23)).astype(np.float32)
    x[0, 4, 4] = 50.0
    np.testing.assert_array_equal(median8(x), ndimage.median_filter(x, footprint=ring, mode="reflect"))
    tiny = np.arange(9, dtype=np.float32).reshape(1, 3, 3)   # hand-checked: the centre's neighbours are
    assert median8(tiny)[0, 1, 1] == 5.0                     # 0 1 2 3 5 6 7 8 -> upper median 5


def test_hot_pixel_scores_its_height_in_noise_units_and_a_star_of_the_same_height_far_less():
    img = noise_frame()
    img[20, 20] += 500.0                            # a 50-sigma single-pixel hit
    img += star(64, 44, 40, peak=500.0, psf_sigma=1.5)  # a star core just as high
    s = sharpness_map(img[None])[0]
    # The noise of I - median8(I) is ~1.09 sigma (the median of 8 normal neighbours has variance ~0.2
    # sigma^2), so the hit scores ~500 / 10.9 = 46. The star's neighbours at distance 1 hold
    # exp(-1 / (2 * 1.5^2)) = 80% of its peak, so its core stands ~100 above them: ~9.
    assert 40 < s[20, 20] < 52
    assert 6 < s[44, 40] < 12
    others = np.delete(s.ravel(), [20 * 64 + 20])
    assert s[20, 20] == s.max() and others.max() < 12


def test_relative_sharpness_puts_a_faint_hit_above_a_bright_star():
    """A busy star field's sharpest pixel is its brightest star's core: thousands of counts above a ring that
    holds most of its light, hundreds of noise units. Against its own signal too (relative 0.1, L.A.Cosmic's
    contrast test), the core of a star 50 times as high as a 15-sigma hit scores below the hit."""
    img = noise_frame(6)
    img += star(64, 40, 20, peak=7500.0, psf_sigma=1.5)    # 750 sigma
    img[12, 50] += 150.0                                   # a faint hit: 15 sigma
    plain, rel = outlier_maps(img[None])["sharpness"][0], outlier_maps(img[None], 0.1)["sharpness"][0]
    assert plain[40, 20] > 5 * plain[12, 50]               # in noise units alone the star wins: 134 against 14
    # hit: 150 / (10.9 + 15) = 5.8; star core: its ring median (the upper of the two middle neighbours) holds
    # exp(-1 / 4.5) = 0.80 of the peak, so 0.2 x 7500 / (10.9 + 750) = 2.0
    assert 5 < rel[12, 50] < 6.5 and 1.5 < rel[40, 20] < 2.5
    assert rel[12, 50] == rel.max()
    noise = outlier_maps(noise_frame(6)[None], 0.1)["sharpness"][0]
    assert noise.max() < 5                                  # the noise's own tail stays below the hit


def test_sharpness_ignores_units_offset_and_gain():
    img = noise_frame(1)
    img[5, 7] += 300.0
    a = sharpness_map(img[None])[0]
    b = sharpness_map((3.5 * img - 1234.0)[None])[0]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_masked_pixels_stay_masked_and_never_spread():
    img = noise_frame(2)
    img[10:14, 10:14] = np.nan
    s = sharpness_map(np.stack([img, np.full_like(img, np.nan)]))
    assert np.isnan(s[0, 10:14, 10:14]).all()
    assert np.isfinite(s[0][~np.isnan(img)]).all()
    assert np.abs(s[0, 9, 9:15]).max() < 6  # the fill (frame median) is not a fake edge
    assert np.isnan(s[1]).all()             # a frame with nothing usable


def test_constant_frame_scores_zero_and_an_empty_block_is_empty():
    assert all((m == 0).all() for m in outlier_maps(np.full((1, 16, 16), 7.0, np.float32)).values())
    assert all(m.shape == (0, 16, 16) for m in outlier_maps(np.empty((0, 16, 16), np.float32)).values())


def test_ingest_keeps_the_hit_that_normalisation_clips():
    """After percentile normalisation a 30 000-count hit and a 6 000-count star core both read 1.0;
    the sharpness recorded per tile at ingestion still tells them apart."""
    cfg = config.parse({"ingest": {"tile_size": 32, "tile_overlap": 0}})
    img = noise_frame(3)
    img += star(64, 16, 16, peak=5000.0, psf_sigma=1.5)   # top-left tile: a star
    img[48, 48] += 30000.0                                # bottom-right tile: a cosmic-ray hit
    tiles, stats, where, usable = prepare(img[None], cfg)
    assert usable.all() and len(tiles) == 4 and len(stats["sharpness"]) == 4
    by_pos = {(y0, x0): (t, s) for (_, y0, x0), t, s in zip(where, tiles, stats["sharpness"])}
    assert np.nanmax(by_pos[0, 0][0]) == pytest.approx(1.0) and np.nanmax(by_pos[32, 32][0]) == pytest.approx(1.0)
    # sharpness_relative 0.1: the hit's ring is sky, so it reaches ~1 / 0.1 = 10 (30000 / (10.9 + 3000));
    # the star's core stands ~25% of its peak above its ring: ~1250 / (10.9 + 500) = 2.4
    assert 9.5 < by_pos[32, 32][1] < 10 and 1.5 < by_pos[0, 0][1] < 3.5
    assert max(by_pos[0, 32][1], by_pos[32, 0][1]) < 6
    noise_units = config.parse({"ingest": {"tile_size": 32, "tile_overlap": 0, "sharpness_relative": 0}})
    _, plain, _, _ = prepare(img[None], noise_units)
    by_pos = dict(zip([(y0, x0) for _, y0, x0 in where], plain["sharpness"]))
    assert by_pos[32, 32] > 1000 and 0.02 * by_pos[32, 32] < by_pos[0, 0] < 0.2 * by_pos[32, 32]
    off = config.parse({"ingest": {"tile_size": 32, "tile_overlap": 0, "pixel_outliers": False}})
    tiles_off, stats_off, _, _ = prepare(img[None], off)
    np.testing.assert_array_equal(tiles_off, tiles)
    assert all((stats_off[s] == 0).all() for s in STATS)
    np.testing.assert_array_equal(stats_off["intensity_scale"], stats["intensity_scale"])


def test_dead_column_is_cold_and_sky_is_not():
    """A column reading 0 on a 1000-count sky with noise 10 lies ~1000 / 10 = 100 noise units below the
    median (the noise unit is the spread of I - median8(I), 1.0-1.1 sigma); plain sky reaches ~4 (the
    lowest of 4096 normal pixels), a star nothing."""
    img = noise_frame(4) + star(64, 30, 30, peak=3000.0, psf_sigma=1.5)
    clean = outlier_maps(img[None])["coldness"][0]
    img[:, 40:42] = 0.0
    dead = outlier_maps(img[None])["coldness"][0]
    assert clean.max() < 6
    assert 85 < dead[:, 40:42].min() and dead[:, 40:42].max() < 115
    assert np.delete(dead, [40, 41], axis=1).max() < 6  # (a star is strongly negative: bright, not cold)


# ---- the fast kernels against the previous implementation (tests/legacy_kernels.py) -----------------
def _awkward_block(seed: int, h: int, w: int) -> np.ndarray:
    """Random frames with the cases that need care: a masked patch, an all-NaN frame, a no-spread frame
    (constant but for one spike: the noise falls back to the standard deviation), an inf pixel."""
    x = np.random.default_rng(seed).normal(100.0, 10.0, (5, h, w)).astype(np.float32)
    x[1, : max(1, h // 3), : max(1, w // 4)] = np.nan
    x[2] = np.nan
    x[3] = 5.0
    x[3, h // 2, w // 2] = 50.0
    x[4, 0, 0] = np.inf
    return x


@pytest.mark.parametrize("h,w", [(1, 1), (1, 9), (2, 3), (17, 23), (70, 90)])
def test_median8_and_maps_equal_the_previous_implementation(h, w):
    import legacy_kernels as legacy

    x = _awkward_block(h * w, h, w)
    np.testing.assert_array_equal(median8(np.nan_to_num(x)), legacy.median8(np.nan_to_num(x)))
    maps = outlier_maps(x)
    for i in range(len(x)):  # the old code took its statistics per block; one frame at a time they agree
        old = legacy.outlier_maps(x[i:i + 1])
        for s in old:
            np.testing.assert_allclose(maps[s][i], old[s][0], rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("h,w,step", [(70, 90, 3), (1, 9, 1), (2, 3, 1), (17, 23, 7)])
def test_the_noise_sample_equals_the_filtered_excess_at_the_sampled_pixels(h, w, step):
    """The noise is measured on the excess at every step-th pixel, computed without filtering the whole frame
    (a sorting network per sampled pixel); it equals the full filtering pass's excess there."""
    from cnnpipe.pixel_outliers import _cells, _levels, _sampled_excess

    x = _awkward_block(h * w + step, h, w)
    level = _levels(x)[0]
    med = np.empty(x.shape, np.float32)
    _cells(x, level, np.array([0, h]), np.array([0, w]), med=med)
    full = np.where(np.isfinite(x), x - med, np.nan).reshape(len(x), -1)[:, ::step]
    np.testing.assert_array_equal(_sampled_excess(x, level, step), full)


@pytest.mark.parametrize("h,w,tile,overlap", [(70, 90, 16, 4), (70, 90, 32, 0), (70, 90, 64, 16), (70, 90, 128, 0),
                                              (5, 7, 8, 2), (64, 64, 64, 16), (130, 40, 64, 16)])
def test_outlier_peaks_equal_the_tile_maxima_of_the_maps(h, w, tile, overlap):
    import legacy_kernels as legacy
    from cnnpipe import pixel_outliers
    from cnnpipe.tiling import tile_starts

    x = _awkward_block(h + w, h, w)
    ys, xs = tile_starts(max(h, tile), tile, overlap), tile_starts(max(w, tile), tile, overlap)
    peaks = pixel_outliers.outlier_peaks(x, ys, xs, tile)
    for i in range(len(x)):
        maps = legacy.outlier_maps(x[i:i + 1])
        for s, m in maps.items():
            expected = legacy.peak(np.stack([t for _, _, t in legacy.tiles(m[0], tile, overlap)]))
            assert peaks[s][i].shape == (len(ys), len(xs))
            np.testing.assert_allclose(peaks[s][i].ravel(), expected, rtol=1e-4, atol=1e-4, err_msg=f"{i} {s}")


def test_row_median_equals_numpy():
    from cnnpipe.pixel_outliers import row_median

    for k in (1, 2, 7, 1024):
        a = np.random.default_rng(k).normal(size=(6, k)).astype(np.float32)
        np.testing.assert_allclose(row_median(a), np.median(a, axis=1), rtol=1e-6)


@pytest.mark.parametrize("h,w,tile,overlap", [(70, 90, 32, 0), (64, 64, 64, 16), (5, 7, 8, 2)])
def test_relative_peaks_equal_the_tile_maxima_of_the_relative_maps(h, w, tile, overlap):
    """The one-pass kernel (sharpness against the pixel's own signal, the noise sampled first) gives each
    tile the maximum of the full map, on the awkward frames (masked patch, all-NaN, no spread, inf)."""
    import legacy_kernels as legacy
    from cnnpipe import pixel_outliers
    from cnnpipe.tiling import tile_starts

    x = _awkward_block(h * w + 1, h, w)
    if h >= 9:
        x[0, :9, :9] += star(9, 4, 4, 400.0, 1.5)          # a star: its core is sharp in noise units only
    ys, xs = tile_starts(max(h, tile), tile, overlap), tile_starts(max(w, tile), tile, overlap)
    peaks = pixel_outliers.outlier_peaks(x, ys, xs, tile, relative=0.1)
    maps = outlier_maps(x, relative=0.1)
    for i in range(len(x)):
        m = np.where(np.isnan(maps["sharpness"][i]), -np.inf, maps["sharpness"][i])
        expected = np.maximum(legacy.peak(np.stack([t for _, _, t in legacy.tiles(m, tile, overlap)])), 0)
        np.testing.assert_allclose(peaks["sharpness"][i].ravel(), np.nan_to_num(expected, neginf=0.0), rtol=1e-4,
                                   atol=1e-4, err_msg=str(i))
