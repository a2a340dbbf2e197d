"""Detection that does not depend on one data set: transform prediction on the orientations the data is
not invariant under, the calibrated (tail) ensemble and the patch memory bank."""
import numpy as np
import pandas as pd
import pytest
import torch

from cnnpipe import config
from cnnpipe.augment import IDENTITY, Transform, cnn_has_task, oriented, pretext_transforms, symmetry_group
from cnnpipe.components import models_needed
from cnnpipe.components.batch import LatentSpace
from cnnpipe.components.latent import cnn_knn, layout_knn
from cnnpipe.config import Augment
from cnnpipe.models.cnn import CNN, CNNObjective, cnn_score
from cnnpipe.patches import coreset, normalise, owner_ids, patch_distance, patch_vectors, sample_bank
from cnnpipe.rank import consensus_factors, ensemble, pareto_shape, tail_surprise


def test_pretext_classes_are_the_orientations_that_are_not_symmetries():
    everything = {Transform(k, f) for f in (False, True) for k in range(4)}
    assert set(pretext_transforms(Augment(False, False, False, 4))) == everything   # digits: all 8
    assert pretext_transforms(Augment(False, False, False, 0))[0] == IDENTITY
    # both flips make the half turn a symmetry: only the quarter turn is left to recognise
    assert pretext_transforms(Augment(True, True, False, 0)) == [IDENTITY, Transform(1, False)]
    assert {t.k for t in symmetry_group(Augment(True, True, False, 0))} == {0, 2}
    # one flip: the four turns are four classes (a turned frame is never a mirrored one)
    assert [t.k for t in pretext_transforms(Augment(True, False, False, 0))] == [0, 1, 2, 3]
    # turns allowed but no flip: only the mirror image is recognisable
    assert pretext_transforms(Augment(False, False, True, 0)) == [IDENTITY, Transform(0, True)]
    # isotropic data: nothing to predict, so no self-supervised CNN is trained even at a cnn weight > 0
    assert pretext_transforms(Augment(True, True, True, 0)) == []
    w = {"recon": 1.0, "cnn": 1.0}
    assert models_needed(w, cnn_has_task({"hflip": True, "vflip": True, "rot90": True, "translate": 0}, None)) == {"vae"}
    assert models_needed(w, cnn_has_task(Augment(True, True, True, 0), "labels.csv")) == {"vae", "cnn"}
    assert models_needed(w, cnn_has_task(Augment(False, False, False, 0), None)) == {"vae", "cnn"}
    # oriented (aligned) data: whatever orientation change is not a symmetry; isotropic data: none
    assert oriented(Augment(False, False, False, 4)) and oriented({"hflip": True, "vflip": True, "rot90": False,
                                                                   "translate": 0})
    assert not oriented(Augment(True, True, True, 0)) and not oriented(Augment(True, False, True, 2))


def _glyph(n: int, gen: torch.Generator) -> torch.Tensor:
    """A '6'-like glyph (a loop at the bottom, a stem up the left) with jitter: it has no rotation symmetry."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    out = torch.zeros(n, 1, 16, 16)
    for i in range(n):
        cy, cx = 10 + torch.randn(1, generator=gen).item() * 0.5, 8 + torch.randn(1, generator=gen).item() * 0.5
        ring = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        img = torch.exp(-((ring - 3) ** 2) / 0.8)
        img[2:int(cy), 4:7] += 0.8 * (xx[2:int(cy), 4:7] - 5).abs().lt(1.2).float()
        out[i, 0] = img + 0.05 * torch.randn(16, 16, generator=gen)
    return out


def test_a_turned_six_ranks_top_when_rotations_are_off():
    """With every symmetry off the CNN learns which of the 8 orientations a frame is in; a 6 turned by half
    a turn (a '9') is then the frame it is least sure about."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = config.parse({"augment": {"hflip": False, "vflip": False, "rot90": False, "translate": 1}})
    task = CNNObjective(cfg, [])
    assert len(task.transforms) == 8
    model = CNN(1, 16, [4, 8], 16, task.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = _glyph(64, gen)
    for _ in range(80):
        loss, _ = task.train_loss(model, {"x": x, "y": torch.zeros(64, dtype=torch.long)}, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = _glyph(30, gen)
    test[7] = torch.rot90(test[7], 2, dims=(-2, -1))     # the '9'
    meta = {"mode": "self-supervised", "transforms": [[t.k, int(t.flip), t.dy, t.dx] for t in task.transforms]}
    s = cnn_score(model, test, meta)
    assert int(s.argmax()) == 7
    assert s[7] > 3 * s[torch.arange(30) != 7].max()
    # in the feature space the CNN learned for that task, the turned 6 is also the loneliest frame
    with torch.no_grad():
        f = model.features(test).numpy()
    d = cnn_knn(LatentSpace(np.zeros((30, 1)), 3, cnn_features=f))
    assert int(d.argmax()) == 7 and d[7] > 1.5 * np.delete(d, 7).max()


def test_tail_surprise_values():
    v = np.arange(1.0, 101.0)        # uniform 1..100: median 50.5, q75 75.25, q90 90.1 (excess ratio 1.6)
    s = tail_surprise(v, 0.9)
    assert np.allclose(s[:90], -np.log((100 - np.arange(90)) / 100))   # empirical: fraction >= value
    # a light tail (ratio below log 5 / log 2) is treated as exponential through the q90 anchor
    sigma = (90.1 - 50.5) / np.log(5)
    assert np.allclose(s[90:], -np.log(0.5 * np.exp(-(v[90:] - 50.5) / sigma)))
    assert np.all(np.diff(s) > 0)
    assert tail_surprise(np.r_[np.zeros(50), 1e-3], 0.9)[-1] == 50.0      # constant elsewhere: capped


def test_tail_fit_is_not_pulled_by_the_extremes():
    """The shape and scale come from the bulk: a heavy tail (Pareto, xi = 2/3) keeps its weight, and one
    enormous value does not change how surprising the others are."""
    assert abs(pareto_shape((5 ** (2 / 3) - 1) / (2 ** (2 / 3) - 1), 0.5, 0.2) - 2 / 3) < 1e-6
    rng = np.random.default_rng(0)
    v = rng.pareto(1.5, 5000) + 1
    s = tail_surprise(v, 0.9)
    x = np.quantile(v, 0.999)                   # truth: P(X > x) = x^-1.5, about 0.001
    assert abs(np.interp(x, np.sort(v), np.sort(s)) - 1.5 * np.log(x)) < 0.7
    w = np.r_[v, 1e9]
    assert np.allclose(tail_surprise(w, 0.9)[:-1], s, atol=0.01)


def _table(cols: dict) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"source": ["s"] * n, "key": ["0"] * n, "population": ["p"] * n, **cols})


@pytest.mark.parametrize("consensus", [0.0, 0.5])
def test_one_extreme_component_lifts_a_frame(consensus):
    rng = np.random.default_rng(0)
    cols = {c: rng.normal(size=300) for c in ("a", "b", "c", "d", "e")}
    cols["c"][42] = 9.0               # extreme in one component only, ordinary in the other four
    s = ensemble(_table(cols), {c: 1.0 for c in cols}, "tail", 2.0, tail_top=3, consensus=consensus)
    assert int(np.argmax(s)) == 42


def test_consensus_factors_values():
    """Six rows, three columns, two pseudo-anomalies each time (fraction 1/3), chosen by the other two
    columns' sum (tail_top 2 of the two left): a's are rows 3 and 5 (b + c = 10, 9), which a ranks 4th and
    5th of 6: AUROC (4 + 5 - 3) / (2 * 4) = 3/4, Gini 1/2. b's are rows 4 and 5 (a + c = 10, 8), ranked 4th
    and 6th by b: AUROC 7/8, Gini 3/4. c's are rows 5 and 4 (a + b = 17, 16), c's two smallest: Gini -1 -> 0.
    Divided by the largest: 2/3, 1, 0."""
    a = [0.0, 1, 2, 3, 9, 8]
    b = [1.0, 0, 3, 8, 7, 9]
    c = [5.0, 4, 3, 2, 1, 0]
    f = consensus_factors(np.column_stack([a, b, c]), tail_top=2, fraction=1 / 3, minimum=1)
    np.testing.assert_allclose(f, [2 / 3, 1.0, 0.0])
    assert np.all(consensus_factors(np.ones((6, 3)), 2, 0.5, 1) == 1)    # nothing varies: weights unchanged
    assert np.all(consensus_factors(np.arange(6.0)[:, None], 2, 0.5, 1) == 1)   # one column: nothing to agree with


def test_consensus_weighting_turns_down_components_that_see_only_their_own_noise():
    """Three components see the anomalies (20 frames of 1000, 3-5 sigma each), four see only their own
    heavy-tailed noise (Student t, 2 degrees of freedom). Without labels, consensus turns the four down and
    more of the anomalies reach the top 20. (It bootstraps from the configured weights' ranking: it helps
    where that ranking's top holds more anomalies than any one noise tail, as here.)"""
    rng = np.random.default_rng(2)
    n, bad = 1000, np.arange(20)
    cols = {f"good{i}": rng.normal(size=n) for i in range(3)}
    for c in cols.values():
        c[bad] += rng.uniform(3, 5, size=len(bad))
    cols |= {f"noise{i}": rng.standard_t(2, size=n) for i in range(4)}
    df, w = _table(cols), {c: 1.0 for c in cols}
    terms = np.column_stack([tail_surprise(v) for v in cols.values()])
    f = consensus_factors(terms, 2, 0.03, 10)
    assert f[:3].mean() > f[3:].mean() + 0.3
    hits = [len(np.intersect1d(np.argsort(-ensemble(df, w, "tail", 2.0, tail_top=2, consensus=c))[:20], bad))
            for c in (0.0, 0.5)]
    assert hits[1] >= hits[0] + 4, hits      # 6 -> 13 of 20


def test_consensus_shrinks_a_components_tail_but_not_its_extremes():
    """Three components agree on 20 anomalies of 600 (3-5 sigma each); ``line`` sees none of them, only one
    satellite trail, 40 sigma out (tail surprise far above 5). Consensus gives ``line`` the smallest
    agreement, so at consensus 1 with nothing exempt the trail's surprise counts for next to nothing and it
    falls out of the top 20. With the part above 5 exempt it is ranked first, and the frames below the
    exemption are scored exactly as without it."""
    rng = np.random.default_rng(3)
    n, bad, trail = 600, np.arange(20), 500
    cols = {f"good{i}": rng.normal(size=n) for i in range(3)}
    for c in cols.values():
        c[bad] += rng.uniform(3, 5, size=len(bad))
    cols["line"] = rng.normal(size=n)
    cols["line"][trail] = 40.0
    df, w = _table(cols), {c: 1.0 for c in cols}
    terms = np.column_stack([tail_surprise(v) for v in cols.values()])
    assert consensus_factors(terms, 2, 0.05, 10)[3] < 0.2 and terms[trail, 3] > 15
    shrunk = ensemble(df, w, "tail", 2.0, tail_top=2, consensus=1.0)
    exempt = ensemble(df, w, "tail", 2.0, tail_top=2, consensus=1.0, consensus_exempt=5.0)
    assert trail not in np.argsort(-shrunk)[:20]
    assert int(np.argmax(exempt)) == trail
    below = terms.max(axis=1) <= 5.0
    np.testing.assert_allclose(exempt[below], shrunk[below])


def test_a_busy_normal_frame_does_not_outrank_a_trail():
    """``sharp`` has a long tail on normal frames (busy star fields: heavy-tailed), ``line`` is tight on
    normal frames; the trail is far out in ``line`` only, the busiest normal frame far out in ``sharp``.
    Calibrated against its own population the busy frame's value is usual, the trail's is not."""
    rng = np.random.default_rng(1)
    n = 400
    sharp = rng.pareto(1.5, n) + 1       # heavy tail: a few normal frames 20-100x the median
    line = rng.normal(1.0, 0.05, n)
    trail = 17
    line[trail], sharp[trail] = 1.5, np.median(sharp)       # 10 sigma in line
    busy = int(np.argmax(sharp))
    df = _table({"sharp": sharp, "line": line})
    for consensus in (0.0, 0.5):
        tail = ensemble(df, {"sharp": 1.0, "line": 1.0}, "tail", 2.0, tail_top=3, consensus=consensus)
        assert tail[trail] > tail[busy] and int(np.argmax(tail)) == trail


def test_layout_knn_is_not_outvoted_by_components_that_see_nothing():
    """Aligned digit-like data: nine pixel-statistic components (eight weighted by default) are heavy-tailed
    noise (Student t, 3 degrees of freedom), the CNN's two are plain noise, only the thumbnail kNN sees the
    12 anomalies of 600 (2.5 sigma). At its default weight most of them reach the top 2k; at weight 1 the
    noise tails outvote it."""
    s = config.parse({}).score
    rng = np.random.default_rng(0)
    n, bad = 600, np.arange(12)
    blind = ("recon_sobel", "masked", "sobel_peak", "sharpness", "coldness", "corner", "line", "patch_knn",
             "latent_knn")
    cols = {c: rng.standard_t(3, size=n) for c in blind} | {c: rng.normal(size=n) for c in ("cnn", "cnn_knn",
                                                                                             "layout_knn")}
    cols["layout_knn"][bad] += 2.5
    hits = []
    for w in (1.0, s.weights["layout_knn"]):
        score = ensemble(_table(cols), {**s.weights, "layout_knn": w}, s.ensemble, s.power, None, s.tail_top,
                         s.tail_quantile, s.consensus, s.consensus_fraction, s.consensus_min)
        hits.append(len(np.intersect1d(np.argsort(-score)[:2 * len(bad)], bad)))
    assert s.weights["layout_knn"] > 1 and hits[0] <= 2 and hits[1] >= 8, hits


def test_a_turned_six_has_the_loneliest_thumbnail():
    """layout_knn's thumbnails (the intensity averaged down to layout_side) of 6s, one turned half a turn:
    the '9' is the frame farthest from its neighbours, with no model trained."""
    from cnnpipe.components.batch import ShardBatch
    from cnnpipe.score import batch_components

    gen = torch.Generator().manual_seed(0)
    x = _glyph(40, gen)
    x[11] = torch.rot90(x[11], 2, dims=(-2, -1))
    x = torch.cat([x, x], dim=1)                      # intensity + a second channel the thumbnail ignores
    x[:, 1] = torch.rand(40, 16, 16, generator=gen)
    b = ShardBatch(x, torch.ones(40, 16, 16), {}, vae=_NoVAE())
    t = batch_components(b, [], layout_side=4)["layout"]
    assert t.shape == (40, 16)
    np.testing.assert_allclose(t[3, 5], x[3, 0, 4:8, 4:8].mean().item(), rtol=1e-5)   # row 1, column 1 block
    d = layout_knn(LatentSpace(np.zeros((40, 1)), 3, layout=t))
    assert int(d.argmax()) == 11 and d[11] > 2 * np.delete(d, 11).max()


class _NoVAE:
    """Stands in for the VAE: only its encoder's latent mean is asked for."""

    def encode(self, x):
        return torch.zeros(len(x), 2), torch.zeros(len(x), 2)


def _blobs(n: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth round 'stars' of random brightness at random places on 24x24 tiles."""
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    out = 0.01 * torch.randn(n, 24, 24, generator=gen)
    for i in range(n):
        for _ in range(3):
            cy, cx, a = (torch.rand(3, generator=gen) * torch.tensor([20.0, 20.0, 5.0])).tolist()
            out[i] += (a + 0.5) * torch.exp(-((yy - cy - 2) ** 2 + (xx - cx - 2) ** 2) / 4.0)
    return out


def test_patch_distance_finds_a_local_defect_and_never_matches_itself():
    gen = torch.Generator().manual_seed(0)
    tiles = _blobs(60, gen)
    tiles[13, 5:19, 11] += 2.0        # a short straight streak on an otherwise normal tile
    size, stride = 6, 3
    p = patch_vectors(tiles, size, stride)
    eps = float(p.reshape(-1, size * size).norm(dim=-1).median())
    owners = torch.arange(60)
    bank = normalise(p, eps).reshape(-1, size * size)          # every patch, tile 13's own included
    bank_owner = owners.repeat_interleave(p.shape[1])
    d = patch_distance(tiles, owners, bank, bank_owner, eps, size, stride)
    assert int(d.argmax()) == 13
    # without the owner mask the streak's own patches would be their nearest neighbours (distance 0)
    free = patch_distance(tiles, owners, bank, torch.full_like(bank_owner, -1), eps, size, stride)
    assert torch.all(free < 1e-2) and d[13] > 20 * free.max()
    # a centred patch equals the hand computation
    assert torch.allclose(p[0, 0], (tiles[0, :6, :6] - tiles[0, :6, :6].mean()).flatten(), atol=1e-6)


def test_patch_distance_equals_the_direct_computation():
    gen = torch.Generator().manual_seed(1)
    tiles = torch.rand(20, 16, 16, generator=gen)
    bank = normalise(torch.randn(50, 16, generator=gen), 1.0)
    bank_owner = torch.randint(100, 200, (50,), generator=gen)
    bank_owner[[3, 7, 9]] = torch.tensor([4, 4, 11])        # three bank patches of tiles in this batch
    owners = torch.arange(20)
    got = patch_distance(tiles, owners, bank, bank_owner, 0.5, 4, 4, chunk=48)
    q = normalise(patch_vectors(tiles, 4, 4), 0.5)            # (20, 16, 16)
    dist = torch.cdist(q, bank[None].expand(20, -1, -1))
    dist[owners[:, None, None].expand(-1, 16, 50) == bank_owner[None, None, :]] = float("inf")
    assert torch.allclose(got, dist.min(dim=2).values.amax(dim=1), atol=1e-3)
    assert not torch.allclose(got[4], torch.cdist(q[4], bank).min(dim=1).values.max(), atol=1e-3)


def test_coreset_keeps_a_representative_of_every_rare_shape():
    gen = torch.Generator().manual_seed(0)
    common = 0.01 * torch.randn(2000, 2, generator=gen)              # the noise patches: almost all of them
    rare_a = torch.tensor([10.0, 0.0]) + 0.01 * torch.randn(5, 2, generator=gen)
    rare_b = torch.tensor([0.0, 10.0]) + 0.01 * torch.randn(1, 2, generator=gen)
    x = torch.cat([common, rare_a, rare_b])
    keep = coreset(x, 3)
    assert sorted(int(i) >= 2000 for i in keep) == [False, True, True]
    assert {int(i) >= 2005 for i in keep if i >= 2000} == {False, True}   # one of each rare shape
    assert len(set(keep.tolist())) == 3 and len(coreset(x, 10_000)) == len(x)


def test_the_bank_samples_every_shard_of_the_run(tmp_path):
    import h5py
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    sizes = {0: 300, 1: 500}                     # two shards of different sizes, read in batches of 128
    rows = []
    for shard, n in sizes.items():
        with h5py.File(tmp_path / f"shard-{shard}.h5", "w") as f:
            f["frames"] = rng.random((n, 8, 8), dtype=np.float32)
        rows.append(pd.DataFrame({"status": "ok", "shard": shard, "row": np.arange(n)}))
    man = pd.concat(rows, ignore_index=True)
    paths = [tmp_path / f"shard-{s}.h5" for s in sizes]
    # a bank as large as the run holds every patch once: 4 patches (4x4, stride 4) of each of 800 tiles
    bank, owner, _ = sample_bank(paths, man, 4, 4, 3200, 0, torch.device("cpu"), batch=128)
    every = np.concatenate([owner_ids(s, np.arange(n)) for s, n in sizes.items()])
    assert len(bank) == 3200 and np.array_equal(np.sort(owner), np.sort(np.repeat(every, 4)))
    # a uniform sample draws from both shards in proportion to their tiles (300 : 500)
    _, owner, _ = sample_bank(paths, man, 4, 4, 800, 0, torch.device("cpu"), batch=128)
    from_second = np.mean((owner >> 32) == 1)
    assert len(owner) == 800 and 0.55 < from_second < 0.70


def test_tile_moments_and_their_density():
    from cnnpipe.components.batch import LatentSpace
    from cnnpipe.components.features import moments
    from cnnpipe.components.latent import moments_knn

    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 0, :] = 1.0                      # one bright row: 4 of 16 pixels
    x[0, 1] = 0.5
    m = moments(x)[0]
    assert torch.allclose(m[[0, 2, 5, 6, 7]], torch.tensor([0.25, 0.0, 0.25, 0.5, 0.5]))
    assert torch.isclose(m[1], torch.tensor([0.0] * 12 + [1.0] * 4).std())
    rng = np.random.default_rng(0)
    stats = rng.normal(size=(200, 8))
    stats[50, 5] = 12.0                      # a pile-up: bright fraction far from every other tile
    d = moments_knn(LatentSpace(np.zeros((200, 2)), 5, 0, stats))
    assert int(np.argmax(d)) == 50
