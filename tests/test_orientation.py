"""Orientation score: the field equals scikit-image's structure tensor, its symmetry average turns the vectors
with the frames, the misfit is 0 along the usual direction and |v| across it, tiles go back on their raw
scale, and tracks that do not come from the vertex outscore normal events."""
import h5py
import numpy as np
import pandas as pd
import torch

from cnnpipe.augment import ORIENTATIONS, apply
from cnnpipe.config import parse
from cnnpipe.corners import Reference, frame_batches, reference_maps, write_reference
from cnnpipe.demo import track_event
from cnnpipe.ingest import prepare
from cnnpipe.orientation import (linear, misfit, orientation_field, strength, usual_direction,
                                 vector_symmetry_average)

ALL = dict(hflip=True, vflip=True, rot90=True)


def test_field_is_scikit_images_structure_tensor_as_a_doubled_angle():
    from skimage.feature import structure_tensor

    x = np.random.default_rng(0).random((2, 32, 32))
    x[1, 5:27, 16] += 3.0
    arr, arc, acc = zip(*(structure_tensor(im, sigma=1.5, mode="nearest", order="rc") for im in x))
    want = np.stack([np.array(acc) - np.array(arr), 2 * np.array(arc)], axis=1)
    np.testing.assert_allclose(orientation_field(torch.from_numpy(x), 1.5, 0.0).numpy(), want, atol=1e-12)


def test_a_vertical_line_points_along_plus_x_a_horizontal_one_along_minus_x_a_diagonal_along_y():
    """Doubled angle of the gradient: a vertical line's gradient is along x (angle 0 -> (+, 0)), a
    horizontal line's along y (angle 90 -> doubled 180 -> (-, 0)), a diagonal's at 45 (doubled 90 -> (0, +))."""
    img = np.zeros((3, 21, 21))
    img[0, :, 10] = 1.0
    img[1, 10, :] = 1.0
    img[2] = np.eye(21)[:, ::-1]          # the anti-diagonal: gradient along (1, 1) in (x, y)
    v = orientation_field(torch.from_numpy(img), 1.5, 0.0)[:, :, 10, 10].numpy()
    assert v[0, 0] > 0 and abs(v[0, 1]) < 1e-12
    assert v[1, 0] < 0 and abs(v[1, 1]) < 1e-12
    assert abs(v[2, 0]) < 1e-12 and v[2, 1] > 0
    np.testing.assert_allclose(v[0, 0], -v[1, 0])


def test_symmetry_average_turns_the_vectors_with_the_frames():
    """Averaging a frame's field over the 8 orientations (each view's vectors turned) equals averaging the
    fields of the 8 turned frames: the rule for the vectors is the one the frames obey."""
    x = torch.from_numpy(np.random.default_rng(1).random((1, 24, 24)))
    field = orientation_field(x, 1.5, 1.0)[0].numpy()
    direct = np.mean([orientation_field(apply(x, t), 1.5, 1.0)[0].numpy() for t in ORIENTATIONS], axis=0)
    np.testing.assert_allclose(vector_symmetry_average(field, **ALL), direct, atol=1e-10)
    np.testing.assert_allclose(vector_symmetry_average(field, False, False, False), field)


def test_misfit_is_zero_along_the_usual_direction_and_the_whole_strength_across_it():
    v = torch.tensor([[[[3.0]], [[4.0]]], [[[-3.0]], [[-4.0]]], [[[4.0]], [[-3.0]]]])   # along, across, at 90
    direction, usual = usual_direction(np.array([[[3.0]], [[4.0]]]), np.array([[5.0]]))
    np.testing.assert_allclose(direction[:, 0, 0], [0.6, 0.8])          # every frame agreed: length 1
    assert usual[0, 0] < 1e-9                                            # and none misfits
    m = misfit(v, torch.from_numpy(direction)[None].expand(3, -1, -1, -1))
    np.testing.assert_allclose(m[:, 0, 0].numpy(), [0.0, 5.0, 2.5], atol=1e-6)
    # half the frames one way, half across: no usual direction, every edge misfits by half its strength
    direction, usual = usual_direction(np.zeros((2, 1, 1)), np.array([[5.0]]))
    assert np.all(direction == 0) and usual[0, 0] == 2.5
    field = orientation_field(torch.rand(3, 16, 16, dtype=torch.float64), 1.5, 1.0)
    np.testing.assert_allclose(strength(field).numpy(), field.norm(dim=1).numpy(), rtol=1e-12)


def test_tiles_go_back_on_their_frames_raw_scale():
    """``intensity_scale`` is the spread each frame was divided by and ``intensity_offset`` the level taken off
    it: the tile, unstretched, times the scale, plus the offset, is the raw frame (clipped at the
    normalisation's percentiles)."""
    cfg = parse({"ingest": {"tile_size": 16, "tile_overlap": 4, "n_shards": 1}})
    rng = np.random.default_rng(2)
    raw = rng.normal(100.0, 5.0, (2, 16, 16)).astype(np.float32)
    raw[1] = raw[1] * 10.0 + 1000.0            # another camera: ten times the spread
    tiles, stats, where, _ = prepare(raw.copy(), cfg)
    lo, hi = np.percentile(raw.reshape(2, -1), [0.5, 99.5], axis=1)
    np.testing.assert_allclose(stats["intensity_scale"], hi - lo, rtol=1e-4)
    np.testing.assert_allclose(stats["intensity_offset"], lo, rtol=1e-5)
    back = linear(torch.from_numpy(tiles), torch.from_numpy(stats["intensity_scale"]), cfg.ingest.normalise).numpy()
    want = np.clip(raw - lo[:, None, None], 0, (hi - lo)[:, None, None])
    np.testing.assert_allclose(back, want, rtol=1e-4, atol=1e-3 * (hi - lo).max())
    np.testing.assert_allclose(back + stats["intensity_offset"][:, None, None], np.clip(raw, lo[:, None, None],
                               hi[:, None, None]), rtol=1e-5, atol=1e-3 * (hi - lo).max())


def _shard(tmp_path, frames: np.ndarray, scale: bool = True):
    path = tmp_path / "shard-0.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = frames.astype(np.float32)
        if scale:
            f["intensity_scale"] = np.full(len(frames), 2.0, np.float32)
    man = pd.DataFrame({"source": "/d/ev.h5", "key": "/events", "index": range(len(frames)), "shard": 0,
                        "row": range(len(frames)), "status": "ok", "population": "/d/ev.h5:/events"})
    return path, man


def test_a_shard_without_intensity_scales_reads_as_scale_one_offset_zero(tmp_path):
    path, _ = _shard(tmp_path, np.zeros((3, 4, 4)), scale=False)
    batches = list(frame_batches(path, 2))
    assert [b["intensity_scale"].tolist() for b in batches] == [[1.0, 1.0], [1.0]]
    assert [b["intensity_offset"].tolist() for b in batches] == [[0.0, 0.0], [0.0]]
    path, _ = _shard(tmp_path, np.zeros((3, 4, 4)))          # written before ingestion kept the offset
    assert [(b["intensity_scale"].tolist(), b["intensity_offset"].tolist()) for b in frame_batches(path, 2)] == [
        ([2.0, 2.0], [0.0, 0.0]), ([2.0], [0.0])]


def test_kinks_and_displaced_vertices_cross_the_usual_flow_of_tracks(tmp_path):
    """The demo's detector events: against the reference of 60 normal events (tracks from the centre),
    every event from a displaced vertex and 4 of 5 kinked events score above every normal one (the fifth
    scores among them: 18, their 90th percentile 68); the usual direction on a track's way out is radial."""
    rng = np.random.default_rng(7)
    normal = np.stack([track_event(64, rng) for _ in range(60)])
    odd = np.stack([track_event(64, rng, kind) for kind in ["kink"] * 5 + ["displaced_vertex"] * 5])
    path, man = _shard(tmp_path, normal)
    maps = reference_maps([path], man, 2.5, ALL, torch.device("cpu"))
    write_reference(tmp_path / "ref.h5", maps, 2.5, (1.5, 1.0))
    ref = Reference(tmp_path / "ref.h5", torch.device("cpu"))
    d = maps.direction[0, :, 32, 44]              # 12 px right of the centre: edges run along x, gradients along y
    assert d[0] < -0.3 and abs(d[1]) < 0.1
    frames = torch.from_numpy(np.concatenate([normal, odd])) * 2.0
    scores = ref.misfit_ratio(frames, ref.codes(["/d/ev.h5:/events"] * 70)).amax(dim=(1, 2)).numpy()
    assert scores[65:].min() > scores[:60].max() and np.sum(scores[60:65] > scores[:60].max()) >= 4
