"""Preprocessing: channels equal filters of the filled frame, NaN never smears, shards round-trip."""
import h5py
import numpy as np
import torch

from cnnpipe import config
from cnnpipe.filters import max_pool, sobel_magnitude_direction
from cnnpipe.preprocess import features, preprocess_shard


def test_masked_pixels_do_not_smear_nan():
    x = torch.ones(1, 8, 8)
    x[0, 2:4, 2:4] = float("nan")
    feats, valid = features(x, pool_levels=0, direction=True)
    assert torch.isfinite(feats).all()
    # the frame is flat (1) once the hole is filled with the median (1): no edge anywhere
    assert torch.equal(feats[0, 1], torch.zeros(8, 8))
    assert valid[0, 2, 2].item() == 0.0 and valid[0, 0, 0].item() == 1.0


def test_channels_equal_sobel_then_pool():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 16, 16), dtype=np.float32))
    feats, valid = features(x, pool_levels=1, direction=False)
    mag, _ = sobel_magnitude_direction(x)
    assert feats.shape == (3, 2, 8, 8) and valid.shape == (3, 8, 8)
    assert torch.equal(feats[:, 0], max_pool(x, 1)) and torch.equal(feats[:, 1], max_pool(mag, 1))
    assert torch.equal(valid, torch.ones(3, 8, 8))


def test_pooled_valid_fraction():
    x = torch.zeros(1, 4, 4)
    x[0, 0, 0] = float("nan")
    _, valid = features(x, pool_levels=1)
    assert valid[0].tolist() == [[0.75, 1.0], [1.0, 1.0]]


def test_preprocess_shard_round_trip(tmp_path):
    cfg = config.parse({"ingest": {"tile_size": 16, "tile_overlap": 4},
                        "preprocess": {"pool_levels": 2, "direction": True, "batch_size": 3},
                        "train": {"vae": {"channels": [4, 8]}}})  # a 4-pixel feature map has room for 2 layers
    frames = np.random.default_rng(1).random((7, 16, 16)).astype(np.float32)
    with h5py.File(tmp_path / "frames.h5", "w") as f:
        f["frames"], f["label"] = frames, np.arange(7)
        f["sharpness"], f["coldness"] = np.arange(7.0), -np.arange(7.0)
    n = preprocess_shard(cfg, tmp_path / "frames.h5", tmp_path / "features.h5", torch.device("cpu"))
    with h5py.File(tmp_path / "features.h5") as f:
        assert n == 7 and f["features"].shape == (7, 3, 4, 4) and f["label"][:].tolist() == list(range(7))
        assert f["sharpness"][:].tolist() == list(range(7)) and f["coldness"][0:2].tolist() == [0, -1]
        expected, _ = features(torch.from_numpy(frames), 2, True)
        np.testing.assert_allclose(f["features"][:], expected.numpy(), rtol=1e-6)
