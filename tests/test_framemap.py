"""Whole-frame views: a frame re-assembled from its tiles at reduced resolution, and its tile-score heat map."""
import warnings

import h5py
import numpy as np
import pandas as pd
from skimage.measure import block_reduce

from cnnpipe import framemap
from cnnpipe.tiling import tiles


def _frame() -> np.ndarray:
    img = np.random.default_rng(3).normal(0, 1, (100, 150)).astype(np.float32)
    img[10:30, 20:24] = np.nan  # a masked patch
    return img


def _shards(tmp_path, img, tile=64, overlap=16):
    """The tiles of ``img`` in a frames shard after other frames' rows, stored in reverse order (so the
    reader cannot rely on reading order), with their manifest rows."""
    cut = list(tiles(img, tile, overlap))[::-1]
    junk = np.full((3, tile, tile), 99.0, np.float32)        # other frames' tiles before these
    with h5py.File(tmp_path / "shard-0.h5", "w") as f:
        f["frames"] = np.concatenate([junk, np.stack([t for _, _, t in cut])])
    rows = [dict(source="a.fits", key="0", index=i, frame=0, shard=0, row=3 + n, y0=y0, x0=x0)
            for n, (i, (y0, x0, _)) in enumerate(zip(range(len(cut) - 1, -1, -1), cut))]
    return {0: tmp_path / "shard-0.h5"}, pd.DataFrame(rows)


def test_frame_from_its_tiles_equals_the_block_mean_of_the_frame(tmp_path):
    img = _frame()
    files, man = _shards(tmp_path, img)
    scores = man[["source", "key", "index"]].assign(value=man["index"] / man["index"].max())
    frames = pd.DataFrame({"source": ["a.fits"], "key": ["0"], "frame": [0], "height": [100], "width": [150]})
    assert framemap.build(files, man, scores, frames, 64, 40, tmp_path / "maps.h5") == 1
    m = framemap.read(tmp_path / "maps.h5")[("a.fits", "0", 0)]
    assert m["factor"] == 4 and m["image"].shape == (25, 38)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN blocks
        expect = block_reduce(img, (4, 4), np.nanmean, cval=np.nan)
    np.testing.assert_allclose(m["image"], expect, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(m["image"][3, 5])                        # a block inside the masked patch stays masked
    framemap.build(files, man, scores, frames, 64, 256, tmp_path / "full.h5")       # no downsampling
    np.testing.assert_array_equal(framemap.read(tmp_path / "full.h5")[("a.fits", "0", 0)]["image"], img)
    # heat: each cell the largest value of the tiles covering it
    expect_heat = np.full((25, 38), -np.inf)
    for (_, r), v in zip(man.iterrows(), scores["value"]):
        sl = np.s_[r.y0 // 4:-(-min(r.y0 + 64, 100) // 4), r.x0 // 4:-(-min(r.x0 + 64, 150) // 4)]
        expect_heat[sl] = np.maximum(expect_heat[sl], v)
    np.testing.assert_array_equal(m["heat"], expect_heat.astype(np.float32))
    assert m["heat"][-1, -1] == scores["value"].max()        # the last tile (bottom right) scored highest


def test_frames_to_show_takes_the_cards_tiled_frames_and_the_best_multi_tile_frames():
    top = pd.DataFrame({"source": ["a", "b"], "key": "0", "frame": [1, 0]})     # the gallery's rows
    by_frame = pd.DataFrame({"source": ["a", "b", "c", "a", "d"], "key": "0", "frame": [1, 0, 0, 0, 0],
                             "rank": [1, 2, 3, 4, 5], "tiles": [4, 1, 1, 4, 9]})
    show = framemap.frames_to_show(top, by_frame, n_maps=2)
    assert list(map(tuple, show.to_numpy())) == [("a", "0", 1), ("a", "0", 0)]   # b: one tile; d: not in the top 2
    assert len(framemap.frames_to_show(top, by_frame, n_maps=3)) == 3


def test_boxed_outlines_the_tile_in_the_downsampled_frame():
    rgba = framemap.grey_rgba(np.zeros((25, 38), np.float32))
    out = framemap.boxed(rgba, 36, 86, 64, 64, 4)          # frame rows 36..99, columns 86..149
    red = np.all(out[..., :3] == framemap.BOX_RGB, axis=-1)
    assert red[9, 21:38].all() and red[24, 21:38].all() and red[9:25, 21].all() and red[9:25, 37].all()
    assert red.sum() == 2 * 17 + 2 * 14 and not red[8].any() and not red[:, 20].any()


def test_heat_colours_are_ordered_and_uncovered_cells_transparent():
    rgba = framemap.heat_rgba(np.array([[0.0, 0.5, 1.0, np.nan]], np.float32))
    assert rgba[0, 3, 3] == 0 and (rgba[0, :3, 3] == 255).all()
    lum = rgba[0, :3, :3].astype(int).sum(axis=1)
    assert lum[0] < lum[1] < lum[2]


def test_a_resampled_small_frame_is_mapped_in_its_own_pixels(tmp_path):
    """A 32x48 frame resampled up by 2 at ingest is two 64-pixel tiles 32 frame pixels a side: its view is
    32x48 again (a smooth frame comes back to within the bilinear round trip), its heat map in frame pixels."""
    from cnnpipe.tiling import cut_tiles, upsample

    img = np.add.outer(np.linspace(0, 0.3, 32), np.linspace(0, 0.6, 48)).astype(np.float32)
    img[5, 7] = np.nan
    cut, ys, xs = cut_tiles(upsample(img[None], (64, 96)), 64, 16)
    assert (ys, xs) == ([0], [0, 32])
    with h5py.File(tmp_path / "shard-0.h5", "w") as f:
        f["frames"] = cut
    man = pd.DataFrame({"source": "a.fits", "key": "0", "index": [0, 1], "frame": 0, "shard": 0, "row": [0, 1],
                        "y0": 0, "x0": [0, 16]})
    scores = man[["source", "key", "index"]].assign(value=[0.25, 1.0])
    frames = pd.DataFrame({"source": ["a.fits"], "key": ["0"], "frame": [0], "height": [32], "width": [48],
                           "scale": [2.0]})
    framemap.build({0: tmp_path / "shard-0.h5"}, man, scores, frames, 64, 256, tmp_path / "maps.h5")
    m = framemap.read(tmp_path / "maps.h5")[("a.fits", "0", 0)]
    assert m["factor"] == 1 and m["image"].shape == (32, 48)
    np.testing.assert_allclose(m["image"], img, atol=0.01, equal_nan=True)
    assert np.argwhere(np.isnan(m["image"])).tolist() == [[5, 7]]
    np.testing.assert_array_equal(m["heat"][:, :16], 0.25)       # frame columns only the first tile covers
    np.testing.assert_array_equal(m["heat"][:, 16:], 1.0)
