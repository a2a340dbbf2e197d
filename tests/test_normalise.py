"""Block normalisation equals the per-frame reference (np.percentile, the previous code) on awkward data."""
import numpy as np
import pytest

import legacy_kernels as legacy
from cnnpipe.normalise import _percentile_pair, frame_scales, normalise_block


@pytest.mark.parametrize("percentiles", [(0.5, 99.5), (0, 100), (10, 90), (50, 50), (99, 1)])
@pytest.mark.parametrize("size", [1, 2, 3, 100, 4096])
def test_percentile_pair_equals_numpy(percentiles, size):
    flat = np.random.default_rng(size).normal(size=(4, size)).astype(np.float32)
    flat[1] = 3.0  # ties
    lo, hi = _percentile_pair(flat, percentiles)
    expected = np.percentile(flat, percentiles, axis=1)
    np.testing.assert_allclose(lo, expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hi, expected[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["percentile", "asinh", "zscore"])
@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (64, 64), (33, 70)])
def test_block_equals_the_previous_per_frame_normalisation(method, h, w):
    x = np.random.default_rng(h * w).normal(1000.0, 30.0, (5, h, w)).astype(np.float32)
    x[1, 0, 0] = np.nan
    x[2] = np.nan            # nothing usable
    x[3] = 7.0               # no spread: scale 1
    x[4, -1, -1] = np.inf    # inf is masked like NaN
    out, usable = normalise_block(x, method, (0.5, 99.5), 0.1)
    assert usable.tolist() == [True, h * w > 1, False, True, h * w > 1]
    for i in range(len(x)):
        if not usable[i]:
            assert np.isnan(out[i]).all()
            continue
        expected = legacy.normalise(x[i], method, (0.5, 99.5), 0.1)[0]
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=2e-5, equal_nan=True)


def test_frame_scales_are_per_frame():
    x = np.stack([np.linspace(0, 1, 100), np.linspace(10, 30, 100)]).reshape(2, 10, 10).astype(np.float32)
    offset, scale, usable = frame_scales(x, "percentile", (0, 100))
    np.testing.assert_allclose(offset, [0, 10], atol=1e-6)
    np.testing.assert_allclose(scale, [1, 20], rtol=1e-6)
    assert usable.all()


def test_finite_rows_even_where_the_sum_overflows():
    from cnnpipe.normalise import finite_rows

    x = np.ones((5, 300), np.float32)
    x[1] = 3e38          # finite, but the row's float32 sum overflows: checked value by value
    x[2, 7] = np.nan
    x[3, -1] = -np.inf
    x[4, :2] = [np.inf, -np.inf]
    assert finite_rows(x).tolist() == [True, True, False, False, False]
    assert finite_rows(np.zeros((0, 4), np.float32)).tolist() == []
