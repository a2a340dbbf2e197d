"""The frame's raw level and noise (``background``, ``noise``): what per-frame normalisation hides. A frame
from another camera, gain or exposure looks ordinary once each frame is scaled to its own range; on the
file's own scale it stands out, on either side of its population."""
import numpy as np
import pandas as pd
import pytest
import torch

from cnnpipe.components import REGISTRY, departure
from cnnpipe.components.batch import ShardBatch
from cnnpipe.components.features import background, noise
from cnnpipe.config import parse
from cnnpipe.ingest import prepare
from cnnpipe.rank import ensemble


def _batch(tiles: np.ndarray, stats: dict, stretch=None) -> ShardBatch:
    n, h, w = tiles.shape
    return ShardBatch(torch.zeros(n, 2, h, w), torch.ones(n, h, w), stats, frames=torch.from_numpy(tiles),
                      stretch=stretch)


def test_background_and_noise_values():
    # a 4x4 tile on its linear scale (no stretch): median 1, MAD 1; its frame was divided by 2 after 100 was
    # taken off
    t = np.array([[[0, 1, 2, 1], [1, 0, 2, 1], [2, 1, 9, 8.5], [0, 2, 1, 8.3]]], np.float32)
    b = _batch(t, {"intensity_scale": np.array([2.0], np.float32), "intensity_offset": np.array([100.0], np.float32)})
    assert background(b).item() == pytest.approx(102.0)          # 100 + 2 x 1
    assert noise(b).item() == pytest.approx(2 * 1.4826, rel=1e-5)  # 2 x 1.4826 x MAD
    # a tile with no finite pixel has no level: it gets the batch's median, not an unusual 0
    two = np.stack([t[0], np.full((4, 4), np.nan, np.float32), t[0] + 4])
    b = _batch(two, {"intensity_scale": np.ones(3, np.float32), "intensity_offset": np.zeros(3, np.float32)})
    assert background(b).tolist() == [1.0, 1.0, 5.0] and noise(b).tolist() == pytest.approx([1.4826] * 3)


def test_departure_and_the_two_sided_ensemble_with_pooled_rows():
    v = np.array([1.0, 2.0, 3.0, 10.0, -6.0])
    np.testing.assert_array_equal(departure("noise", v), [1, 0, 1, 8, 8])      # |v - median 2|
    np.testing.assert_array_equal(departure("line", v), v)                     # one-sided: as it is
    # a population of 30 frames at level ~100 and a pooled one of 2 frames: a pooled row is compared with the
    # whole run, so the pooled frame at 40 (below everything) ranks first and the one at 100 does not
    rng = np.random.default_rng(0)
    level = np.r_[rng.normal(100, 1, 30), 40.0, 100.0]
    df = pd.DataFrame({"source": [f"a{i}" for i in range(30)] + ["b0", "b1"], "key": "0", "index": 0,
                       "population": ["a"] * 30 + ["b"] * 2, "background": level})
    score = ensemble(df, {"background": 1.0}, "tail", 2.0, pooled=np.r_[np.zeros(30, bool), True, True])
    assert int(np.argmax(score)) == 30 and score[31] < np.sort(score)[-2]


def _frames(rng, n: int) -> np.ndarray:
    """Star fields in ADU: a sky of 200 e-, a few stars, Poisson noise, gain 2 e-/ADU, bias 1000 ADU."""
    yy, xx = np.mgrid[:32, :32]
    out = np.empty((n, 32, 32), np.float32)
    for i in range(n):
        e = np.full((32, 32), 200.0)
        for _ in range(3):
            y, x = rng.uniform(0, 32, 2)
            e += rng.uniform(1e3, 1e4) / 7.1 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.25)
        out[i] = rng.poisson(e) / 2.0 + 1000.0
    return out


@pytest.mark.parametrize("kind", ["another camera", "a short exposure"])
def test_a_frame_unlike_its_population_on_the_raw_scale_ranks_top(kind):
    rng = np.random.default_rng(3)
    raw = _frames(rng, 40)
    if kind == "another camera":   # gain 0.5 e-/ADU and bias 300 ADU: four times the ADU per electron
        raw[17] = (raw[17] - 1000.0) * 4.0 + 300.0
    else:                          # a tenth of the light: a lower level and less photon noise than any other
        raw[17] = rng.poisson(np.clip((raw[17] - 1000.0) * 2.0 / 10.0, 0, None)) / 2.0 + 1000.0
    cfg = parse({"ingest": {"tile_size": 32}})
    tiles, stats, _, _ = prepare(raw.copy(), cfg)
    b = _batch(tiles, stats, cfg.ingest.normalise)
    df = pd.DataFrame({"source": "f.fits", "key": "0", "index": range(40), "population": "p",
                       "background": background(b).numpy(), "noise": noise(b).numpy()})
    weights = {c.name: c.weight for c in REGISTRY if c.name in ("background", "noise")}
    score = ensemble(df, weights, "tail", 2.0)
    assert int(np.argmax(score)) == 17 and score[17] > 2 * np.delete(score, 17).max()
    if kind == "a short exposure":   # below every other frame: a one-sided score would put it last
        assert df.background[17] < df.background.drop(17).min() and df.noise[17] < df.noise.drop(17).min()
