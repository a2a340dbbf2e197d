"""Tiling in one gather equals cutting tile by tile; per-tile maxima over cells equal the maxima of the tiles."""
import numpy as np
import pytest

import legacy_kernels as legacy
from cnnpipe.tiling import cut_tiles, tile_cells, tile_reduce, tile_starts


@pytest.mark.parametrize("h,w,tile,overlap", [(20, 24, 16, 4), (3, 4, 8, 2), (64, 64, 64, 16), (128, 128, 64, 16),
                                              (100, 37, 32, 0), (64, 200, 64, 63)])
def test_cut_tiles_equals_tile_by_tile(h, w, tile, overlap):
    x = np.random.default_rng(h * w).random((3, h, w), dtype=np.float32)
    x[0, 0, 0] = np.nan
    cut, ys, xs = cut_tiles(x, tile, overlap)
    expected = np.stack([t for frame in x for _, _, t in legacy.tiles(frame, tile, overlap)])
    np.testing.assert_array_equal(cut, expected)
    assert [(y, x0) for y in ys for x0 in xs] == [(y, x0) for y, x0, _ in legacy.tiles(x[0], tile, overlap)]


@pytest.mark.parametrize("h,w,tile,overlap", [(20, 24, 16, 4), (3, 4, 8, 2), (128, 128, 64, 16), (100, 37, 32, 0)])
def test_tile_reduce_equals_the_tile_maxima(h, w, tile, overlap):
    x = np.random.default_rng(1).random((2, h, w), dtype=np.float32)
    ys, xs = tile_starts(max(h, tile), tile, overlap), tile_starts(max(w, tile), tile, overlap)
    rows, cols = tile_cells(ys, tile, h), tile_cells(xs, tile, w)
    cells = np.stack([[[x[f, a:b, c:d].max() for c, d in zip(cols.edges[:-1], cols.edges[1:])]
                       for a, b in zip(rows.edges[:-1], rows.edges[1:])] for f in range(2)])
    got = tile_reduce(np.fmax, cells, rows, cols)
    expected = np.stack([[np.nanmax(t) for _, _, t in legacy.tiles(frame, tile, overlap)] for frame in x])
    np.testing.assert_array_equal(got.reshape(2, -1), expected)


def test_model_shape_and_extent():
    from cnnpipe.tiling import frame_extent, model_shape
    assert model_shape(32, 32, 64) == (64, 64, 2.0) and model_shape(32, 48, 64) == (64, 96, 2.0)
    assert model_shape(100, 20, 64) == (320, 64, 3.2) and model_shape(33, 50, 64)[:2] == (64, 97)
    assert model_shape(64, 40, 64)[:2] == (102, 64)                       # one side below the tile is enough
    assert model_shape(64, 300, 64) == (64, 300, 1.0) and model_shape(32, 48, 64, "pad") == (32, 48, 1.0)
    assert frame_extent(64, 2.0) == 32 and frame_extent(64, 64 / 33) == 33 and frame_extent(64, 1.0) == 64
    with pytest.raises(ValueError, match="small_frames"):
        model_shape(32, 32, 64, "stretch")


def test_upsample_of_a_block_equals_skimage_frame_by_frame():
    from skimage.transform import resize

    from cnnpipe.tiling import upsample
    x = np.random.default_rng(5).random((3, 20, 30), dtype=np.float32)
    got = upsample(x, (64, 96))
    assert got.dtype == np.float32
    for f in range(3):
        np.testing.assert_allclose(got[f], resize(x[f], (64, 96), order=1, anti_aliasing=False, mode="edge"),
                                   rtol=1e-6)
