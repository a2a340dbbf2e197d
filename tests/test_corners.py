"""Corner score: the Shi-Tomasi response equals scikit-image's, a kink is a corner and a straight or gently
curved track is not, the reference is a per-population, symmetry-averaged mean, and a kink away from the
usual vertex outscores a normal event."""
import numpy as np
import pandas as pd
import pytest
import torch

from cnnpipe.corners import (Reference, ReferenceMaps, gaussian_blur, read_reference, reference_maps, shi_tomasi,
                             symmetry_average, write_reference)
from cnnpipe.errors import UserError
from cnnpipe.demo import _draw, helix, track_event
from cnnpipe.tables import write_csv

ALL = dict(hflip=True, vflip=True, rot90=True)


def response(img: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    return shi_tomasi(torch.from_numpy(img[None].astype(np.float64)), sigma)[0].numpy()


def test_gaussian_blur_equals_scipy():
    from scipy import ndimage

    x = np.random.default_rng(1).random((2, 30, 41))
    ours = gaussian_blur(torch.from_numpy(x), 1.7).numpy()
    ref = np.stack([ndimage.gaussian_filter(im, 1.7, mode="nearest", truncate=4.0) for im in x])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_shi_tomasi_equals_scikit_image():
    from skimage.feature import structure_tensor, structure_tensor_eigenvalues

    x = np.random.default_rng(0).random((3, 40, 33))
    x[1, 10:30, 15] += 3.0                      # a line and an L on top of the noise
    x[2, 20, 5:25] += 3.0
    x[2, 5:21, 24] += 3.0
    ref = np.stack([structure_tensor_eigenvalues(structure_tensor(im, sigma=2.5, mode="nearest", order="rc"))[1]
                    for im in x])
    np.testing.assert_allclose(shi_tomasi(torch.from_numpy(x), 2.5).numpy(), ref, atol=1e-12)


def test_a_right_angle_is_a_corner_a_line_and_a_gentle_arc_are_not():
    size = 64
    line, arc, kink = (np.zeros((size, size)) for _ in range(3))
    _draw(line, *helix(32, 8, 0.0, 0.0, 48))                     # straight, 48 px
    _draw(arc, *helix(32, 8, 0.0, 0.02, 48))                     # a track curving by 0.96 rad over 48 px
    ys, xs = helix(32, 8, 0.0, 0.0, 24)
    ys2, xs2 = helix(ys[-1], xs[-1], np.pi / 2, 0.0, 24)         # the same length, turning 90 degrees halfway
    _draw(kink, np.concatenate([ys, ys2]), np.concatenate([xs, xs2]))
    # the middle 24x24 holds the turn and stays 12 px (~5 sigma) from every end of a track
    peak = {name: response(img)[20:44, 20:44].max() for name, img in (("line", line), ("arc", arc), ("kink", kink))}
    # away from its ends a line has one gradient orientation: its smaller eigenvalue is ~0
    assert peak["line"] < 1e-6 * peak["kink"]
    assert peak["kink"] > 20 * peak["arc"]          # measured: 38 vs 0.33


def test_nan_pixels_score_zero_and_do_not_spread():
    img = np.random.default_rng(2).normal(0, 0.05, (32, 32))
    img[10:14, 10:14] = np.nan
    r = response(img, 1.0)
    assert np.isfinite(r).all() and (r[10:14, 10:14] == 0).all()


def test_symmetry_average_spans_the_allowed_group():
    m = np.random.default_rng(3).random((6, 6))
    full = symmetry_average(m, **ALL)
    for g in (np.rot90(full), full.T, full[::-1], full[:, ::-1]):
        np.testing.assert_allclose(g, full)
    group = [np.rot90(m, k) for k in range(4)] + [np.rot90(m.T, k) for k in range(4)]   # the 8 of the square
    np.testing.assert_allclose(full, np.mean(group, axis=0))
    np.testing.assert_allclose(symmetry_average(m, hflip=True, vflip=False, rot90=False), (m + m[:, ::-1]) / 2)
    np.testing.assert_allclose(symmetry_average(m, hflip=False, vflip=False, rot90=False), m)
    np.testing.assert_allclose(symmetry_average(m, hflip=False, vflip=False, rot90=True),
                               np.mean([np.rot90(m, k) for k in range(4)], axis=0))


def test_symmetry_average_uses_the_orientations_the_models_train_with():
    """Both flips without rot90: the mirror images only, never their composition (the 180-degree turn that
    rot90 = false forbids), the same three orientations augment gives the CNN and the VAE."""
    from cnnpipe.augment import dihedral
    from cnnpipe.config import Augment

    m = np.random.default_rng(4).random((6, 6))
    aug = Augment(hflip=True, vflip=True, rot90=False, translate=0)
    assert [(t.k, t.flip) for t in dihedral(aug)] == [(0, False), (0, True), (2, True)]
    np.testing.assert_allclose(symmetry_average(m, hflip=True, vflip=True, rot90=False),
                               (m + m[:, ::-1] + m[::-1, :]) / 3)
    assert not np.allclose(symmetry_average(m, hflip=True, vflip=True, rot90=False),
                           (m + m[:, ::-1] + m[::-1, :] + m[::-1, ::-1]) / 4)  # not the closure with rot180


def test_reference_divides_by_each_frames_population_map_and_names_a_missing_one(tmp_path):
    maps = np.stack([np.full((8, 8), 2.0), np.full((8, 8), 0.5)])
    write_reference(tmp_path / "ref.h5", ReferenceMaps(["/d/ev.h5:/events", "/d/sky"], maps, np.zeros((2, 2, 8, 8)),
                                                       np.ones((2, 8, 8)), np.array([3, 4])), 1.0, (1.5, 1.0))
    ref = Reference(tmp_path / "ref.h5", torch.device("cpu"))
    frames = torch.from_numpy(np.random.default_rng(5).random((3, 8, 8)).astype(np.float32))
    codes = ref.codes(["/d/sky", "/d/ev.h5:/events", "/d/sky"])
    assert codes.tolist() == [1, 0, 1]
    response = shi_tomasi(frames, 1.0)
    ratio = ref.ratio(frames, codes)
    np.testing.assert_allclose(ratio.numpy(), (response / torch.tensor([0.5, 2.0, 0.5])[:, None, None]).numpy())
    with pytest.raises(UserError, match=r"ref.h5: no corner reference for /d/other; it was made for other inputs"):
        ref.codes(["/d/sky", "/d/other"])


def _shard(tmp_path, frames: np.ndarray, sources: list[str], keys: list[str]):
    import h5py

    path = tmp_path / "shard-0.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = frames.astype(np.float32)
    man = pd.DataFrame({"source": sources, "key": keys, "index": range(len(frames)), "shard": 0,
                        "row": range(len(frames)), "status": "ok",
                        "population": [f"{s}:{k}" if k.startswith("/") else s.rsplit("/", 1)[0]  # as the readers say
                                       for s, k in zip(sources, keys)]})
    write_csv(man, tmp_path / "manifest.csv")
    return path, man


def test_reference_is_the_mean_response_of_each_population(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.random((5, 16, 16))
    frames[3:] *= 10.0                                     # the second population has 100x the response
    sources = ["/d/sky/a.fits"] * 3 + ["/d/ev.h5"] * 2
    keys = ["0", "0", "0", "/events", "/events"]
    path, man = _shard(tmp_path, frames, sources, keys)
    maps = reference_maps([path], man, 1.5, dict(hflip=False, vflip=False, rot90=False),
                          torch.device("cpu"), batch=2)   # batches straddle the populations
    assert maps.names == ["/d/ev.h5:/events", "/d/sky"] and maps.counts.tolist() == [2, 3]
    each = shi_tomasi(torch.from_numpy(frames.astype(np.float32)), 1.5).double().numpy()
    np.testing.assert_allclose(maps.corner[0], each[3:].mean(0), rtol=1e-5)
    np.testing.assert_allclose(maps.corner[1], each[:3].mean(0), rtol=1e-5)
    write_reference(tmp_path / "ref.h5", maps, 1.5, (2.0, 0.5))
    back, sigma, orientation_sigmas = read_reference(tmp_path / "ref.h5")
    assert sigma == 1.5 and orientation_sigmas == (2.0, 0.5) and back.names == maps.names
    for got, want in zip(back[1:], maps[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_kink_outscores_normal_events_against_their_reference(tmp_path):
    """The demo's detector events: against the reference of 60 normal events, every kinked event scores
    above the 90th percentile of the normal ones (in the raw response, with no reference, they do not:
    every event has a corner-rich vertex)."""
    rng = np.random.default_rng(7)
    normal = np.stack([track_event(64, rng) for _ in range(60)])
    kinks = np.stack([track_event(64, rng, "kink") for _ in range(6)])
    path, man = _shard(tmp_path, normal, ["/d/ev.h5"] * 60, ["/events"] * 60)
    write_reference(tmp_path / "ref.h5", reference_maps([path], man, 2.5, ALL, torch.device("cpu")), 2.5, (1.5, 1.0))
    ref = Reference(tmp_path / "ref.h5", torch.device("cpu"))
    frames = torch.from_numpy(np.concatenate([normal, kinks]))
    scores = ref.ratio(frames, ref.codes(["/d/ev.h5:/events"] * 66)).amax(dim=(1, 2)).numpy()
    assert scores[60:].min() > np.percentile(scores[:60], 90)
