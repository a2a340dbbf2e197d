"""Scoring: components, robust ensemble within populations, label re-ranking, tile roll-up."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from cnnpipe import components, config
from cnnpipe.components.latent import alignment, knn_distance
from cnnpipe.components.latent import mahalanobis_distance as mahalanobis
from cnnpipe.components.vae import top_mean
from cnnpipe.models.vae import active_units
from cnnpipe.population import population
from cnnpipe.rank import by_frame, ensemble, label_adjustment, rank_scores, read_labels, robust_z

POWER = config.parse({}).score.power  # the schema's default


def _only(name: str) -> dict[str, float]:
    """Weights with one component on (the config merges given weights over the defaults)."""
    return {c: float(c == name) for c in components.names()}


def test_top_mean_ignores_masked_pixels():
    v = torch.arange(16.0).view(1, 4, 4)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    mask[0, 3, 3] = False  # the largest value (15) is masked
    assert top_mean(v, mask, 2 / 16).item() == (14 + 13) / 2
    assert top_mean(v, mask, 0.0).item() == 14.0  # at least one pixel: the max


def test_robust_z_values():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    # median 3, MAD = median(|x - 3|) = 1 -> scale 1.4826
    np.testing.assert_allclose(robust_z(x), [0, 0, 0, 1 / 1.4826, 50.0])  # 97/1.4826 = 65 -> clipped to 50
    np.testing.assert_array_equal(robust_z(np.array([0.0, 0.0, 0.0, 0.2])), [0, 0, 0, 50])


def test_knn_and_mahalanobis_find_the_isolated_point():
    rng = np.random.default_rng(0)
    z = np.vstack([rng.normal(0, 1, (200, 4)), [[8.0, 8.0, 8.0, 8.0]]])
    assert knn_distance(z, 5).argmax() == 200 and mahalanobis(z).argmax() == 200
    # the k-th neighbour excludes the point itself: two coincident points are not at distance 0 from "self"
    assert knn_distance(np.array([[0.0], [1.0], [3.0]]), 1).tolist() == [1.0, 1.0, 2.0]
    # the distance to the k-th neighbour, not the mean over the k: 0 has 1 and 3 nearest, so 3 (the mean: 2)
    assert knn_distance(np.array([[0.0], [1.0], [3.0], [10.0]]), 2).tolist() == [3.0, 2.0, 3.0, 9.0]


def test_a_small_group_of_alike_anomalies_is_not_hidden_by_its_own_members():
    """25 nines among 810 other digits are each other's nearest neighbours. Here 5 alike outliers (spread
    0.01) sit 5 sigma off a cloud of 200 normal points: with k = 5 each one's 5th neighbour lies in the
    cloud, so all five rank above every normal point. The mean over the 5 nearest counts the four twins and
    puts them below most of the cloud's edge (0.93 against 2.02)."""
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (200, 2)), 5.0 + rng.normal(0, 0.01, (5, 2))])
    d = knn_distance(x, 5)
    assert d[200:].min() > 1.5 * d[:200].max()
    mean5 = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(x)[0][:, 1:].mean(axis=1)
    assert mean5[200:].max() < mean5[:200].max()        # what the mean would have done


def test_active_units_keep_the_dimensions_that_vary_over_the_frames():
    rng = np.random.default_rng(0)
    z = np.column_stack([rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), np.full(500, 0.3), rng.normal(2, 0.2, 500)])
    np.testing.assert_array_equal(active_units(z, 0.01), z[:, [0, 3]])   # variances 1, 0.0025, 0, 0.04
    assert active_units(z, 2.0).shape == (500, 0)
    assert knn_distance(active_units(z, 2.0), 5).tolist() == [0.0] * 500


def test_a_collapsed_latent_space_does_not_outrank_a_real_outlier():
    """A VAE whose posterior has collapsed gives most tiles one identical latent mean and a few its rounding
    errors. Calibrated against that population, those errors were the run's largest surprise (the helical
    held-out set: 11 normal frames above every anomaly). Over the active dimensions there is nothing to
    measure: latent_knn is 0 and the tile that is truly strange (here in ``recon``) ranks first."""
    n = 60
    rng = np.random.default_rng(1)
    z = np.full((n, 8), 0.25)
    z[40:44] += rng.normal(0, 1e-6, (4, 8))             # rounding-level departures on four tiles
    recon = rng.normal(1.0, 0.1, n)
    recon[7] = 2.0                                       # the real outlier: 10 sigma
    part = pd.DataFrame({"source": ["f.fits"] * n, "key": ["0"] * n, "index": range(n), "frame": range(n),
                         "y0": 0, "x0": 0, "shard": 0, "row": range(n), "population": "", "recon": recon,
                         **{f"z{i}": z[:, i] for i in range(8)}})
    w = {**_only("recon"), "latent_knn": 1.0}
    ranked, _ = rank_scores(config.parse({"score": {"weights": w}}), [part], read_labels(None))
    assert (ranked.latent_knn == 0).all() and ranked["index"].iloc[0] == 7
    every = config.parse({"score": {"weights": w, "latent_active": 0.0}})   # every dimension counts
    ranked, _ = rank_scores(every, [part], read_labels(None))
    assert set(ranked["index"].iloc[:4]) == {40, 41, 42, 43}             # the failure this guards against
    z[:, 0] = rng.normal(0, 1, n)                        # one dimension the VAE uses, tile 3 far out on it
    z[3, 0] = 8.0
    part[[f"z{i}" for i in range(8)]] = z
    ranked, _ = rank_scores(config.parse({"score": {"weights": _only("latent_knn")}}), [part], read_labels(None))
    assert ranked["index"].iloc[0] == 3


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"source": ["/sky/a.fits"] * n + ["/det/t.h5"] * n, "key": ["0"] * n + ["/events"] * n,
                       "index": list(range(n)) * 2})
    # the detector population has 10x larger errors than the sky population
    df["recon"] = np.r_[rng.normal(1, 0.1, n), rng.normal(10, 1, n)]
    df["masked"] = 0.0
    df["population"] = np.where(df.key == "0", "/sky", "/det/t.h5:/events")  # as ingestion records it
    return df


def test_ensemble_normalises_within_population():
    df = _table()
    df.loc[5, "recon"] = 3.0       # a sky frame 20 sigma out: small next to any detector value
    df.loc[70, "masked"] = 0.25    # a detector frame with a masked patch
    for method in ("robust_z", "rank"):
        s = ensemble(df, {"recon": 1.0, "masked": 1.0}, method, POWER)
        top2 = set(np.argsort(-s)[:2])
        assert (5 in top2) if method == "rank" else top2 == {5, 70}, (method, top2)
    assert set(population(df)) == {"/sky", "/det/t.h5:/events"}


def test_weights_zero_drop_a_component():
    df = _table()
    df.loc[70, "masked"] = 0.25
    s = ensemble(df, {"recon": 1.0, "masked": 0.0}, "robust_z", POWER)
    assert np.argmax(s) != 70


def test_labels_move_frame_and_neighbours():
    rng = np.random.default_rng(1)
    n = 50
    z = np.vstack([rng.normal(0, 1, (n - 3, 2)), [[10, 10], [10.1, 10], [10, 10.1]]])
    df = pd.DataFrame({"source": ["s"] * n, "key": ["0"] * n, "index": range(n)})
    labels = pd.DataFrame({"source": ["s"], "key": ["0"], "index": [n - 3], "label": ["boring"]})
    adj, marks = label_adjustment(z, df, labels, n_neighbours=2)
    assert adj[n - 3] == pytest.approx(-2.0) and marks[n - 3] == "boring"
    assert adj[n - 2] < -0.1 and adj[n - 1] < -0.1          # its two latent neighbours follow it down
    assert np.count_nonzero(adj) == 3                        # nobody else moves


def test_rank_scores_contract_and_rollup(tmp_path):
    cfg = config.parse({"score": {"weights": _only("recon"), "k": 2}})
    n = 12
    part = pd.DataFrame({"source": ["f.fits"] * n, "key": ["0"] * n, "index": range(n), "frame": [i // 4 for i in range(n)],
                         "y0": 0, "x0": 0, "shard": 0, "row": range(n), "population": "", "recon": np.linspace(0, 1, n) ** 2,
                         "recon_sobel": 0.0, "kl": 0.0, "masked": 0.0, "sobel_peak": 0.0, "cnn": 0.0,
                         "z0": np.arange(n, dtype=float), "z1": 0.0})
    ranked, z = rank_scores(cfg, [part.iloc[:6], part.iloc[6:]], read_labels(None))
    assert list(ranked.columns[:5]) == ["source", "key", "index", "score", "rank"]
    assert ranked["rank"].tolist() == list(range(1, n + 1)) and ranked["index"].iloc[0] == 11
    assert ranked.score.is_monotonic_decreasing and z.shape == (n, 2) and z[0, 0] == 11
    frames = by_frame(ranked)
    assert frames.frame.tolist() == [2, 1, 0] and frames.tiles.tolist() == [4, 4, 4]
    assert frames.score.iloc[0] == ranked.score.max()


def test_bad_labels_file_is_a_user_error(tmp_path):
    from cnnpipe.errors import UserError

    (tmp_path / "labels.csv").write_text("source,key,index,label\na.fits,0,0,weird\n")
    with pytest.raises(UserError, match="interesting' or 'boring"):
        read_labels(tmp_path / "labels.csv")
    assert read_labels(tmp_path / "missing.csv").empty


def test_boring_label_sinks_the_top_frame_whatever_the_score_scale():
    cfg = config.parse({"score": {"weights": _only("masked"), "label_neighbours": 1}})
    n = 20
    part = pd.DataFrame({"source": ["f.fits"] * n, "key": ["0"] * n, "index": range(n), "frame": range(n),
                         "y0": 0, "x0": 0, "shard": 0, "row": range(n), "population": "", "masked": [0.5] + [0.0] * (n - 1),
                         "z0": np.arange(n, dtype=float)})
    ranked, _ = rank_scores(cfg, [part], read_labels(None))
    assert ranked["index"].iloc[0] == 0 and ranked.score.iloc[0] == 50.0  # robust z clipped at 50
    labels = pd.DataFrame({"source": ["f.fits"], "key": ["0"], "index": [0], "label": ["boring"]})
    ranked, _ = rank_scores(cfg, [part], labels)
    assert ranked["index"].iloc[-1] == 0 and ranked.label.iloc[-1] == "boring"


def test_zero_weight_components_are_not_computed():
    from cnnpipe import components

    w = {**config.parse({}).score.weights, "cnn": 0.0, "cnn_knn": 0.0, "kl": 0.0}
    names = [c.name for c in components.active(w)]
    assert "cnn" not in names and "kl" not in names and "recon_sobel" in names
    assert components.models_needed(w) == {"vae"}
    assert components.models_needed({**w, "cnn": 0.5}) == {"vae", "cnn"} == components.models_needed({**w, "cnn_knn": 1})
    assert [c.name for c in components.gathered({"latent_knn": 1.0})] == ["latent_knn"]
    cfg = config.parse({"score": {"weights": _only("recon"), "k": 2}})
    n = 8
    part = pd.DataFrame({"source": ["f.fits"] * n, "key": ["0"] * n, "index": range(n), "frame": range(n),
                         "y0": 0, "x0": 0, "shard": 0, "row": range(n), "population": "",
                         "recon": np.arange(n, dtype=float), "z0": np.arange(n, dtype=float)})
    ranked, _ = rank_scores(cfg, [part], read_labels(None))
    assert "latent_knn" not in ranked and "mahalanobis" not in ranked   # gathered ones at weight 0: no column
    assert ranked["index"].iloc[0] == n - 1
    off = config.parse({"score": {"weights": {c: 0.0 for c in components.names()}}})  # all off: one score, 0
    ranked, _ = rank_scores(off, [part.drop(columns="recon")], read_labels(None))
    assert (ranked.score == 0).all() and len(ranked) == n



def test_cnn_knn_is_computed_from_the_cnn_features_where_a_cnn_was_trained():
    cfg = config.parse({"score": {"weights": {**_only("recon"), "cnn_knn": 1.0}, "k": 1}})
    assert components.models_needed(cfg.score.weights) == {"vae", "cnn"}
    n = 6
    part = pd.DataFrame({"source": ["f.fits"] * n, "key": ["0"] * n, "index": range(n), "frame": range(n),
                         "y0": 0, "x0": 0, "shard": 0, "row": range(n), "population": "",
                         "recon": np.zeros(n), "z0": np.zeros(n)})
    ranked, _ = rank_scores(cfg, [part], read_labels(None))
    assert "cnn_knn" not in ranked                          # no features: no CNN was trained, no column
    # unit-length features: frames 0-4 point one way (two pairs and one between), frame 5 the other way
    f = np.array([[1, 0], [1, 0.01], [1, 0.3], [1, 0.31], [1, 0.15], [0, 1]], dtype=float)
    ranked, _ = rank_scores(cfg, [part.assign(f0=f[:, 0] * 7, f1=f[:, 1] * 7)], read_labels(None))   # scale-free
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    expected = [min(np.linalg.norm(unit[i] - unit[j]) for j in range(n) if j != i) for i in range(n)]
    got = ranked.sort_values("index").cnn_knn.to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert ranked["index"].iloc[0] == 5


def test_layout_knn_is_computed_from_the_thumbnails_where_the_data_have_an_orientation():
    cfg = config.parse({"score": {"weights": {**_only("recon"), "layout_knn": 1.0, "occupancy": 1.0}, "k": 2}})
    n = 7
    part = pd.DataFrame({"source": ["f.fits"] * n, "key": ["0"] * n, "index": range(n), "frame": range(n),
                         "y0": 0, "x0": 0, "shard": 0, "row": range(n), "population": "",
                         "recon": np.zeros(n), "occupancy": np.zeros(n), "z0": np.zeros(n)})
    ranked, _ = rank_scores(cfg, [part], read_labels(None))
    assert "layout_knn" not in ranked                 # no thumbnails: the data have no orientation, no column
    assert "occupancy" in ranked                      # ... and occupancy measures the frame as a whole
    d = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0.2, 0.9], [6, 6]], dtype=float)
    # frames that do not share a layout (objects anywhere): the mean thumbnail is flat, no column
    ranked, _ = rank_scores(cfg, [part.assign(t0=d[:, 0], t1=d[:, 1])], read_labels(None))
    assert alignment(d) < 0.5 and "layout_knn" not in ranked and "occupancy" in ranked
    t = d + [9.0, 0.0]                                 # a shared layout: bright left, dark right
    ranked, _ = rank_scores(cfg, [part.assign(t0=t[:, 0], t1=t[:, 1])], read_labels(None))
    expected = [np.sort([np.linalg.norm(t[i] - t[j]) for j in range(n) if j != i])[1] for i in range(n)]  # k = 2
    np.testing.assert_allclose(ranked.sort_values("index").layout_knn.to_numpy(), expected, rtol=1e-9)
    assert ranked["index"].iloc[0] == 6
    assert "occupancy" not in ranked                  # aligned frames: the thumbnail holds the amount of signal


def test_occupancy_values_and_a_pile_up_ranks_top():
    from cnnpipe.components.batch import ShardBatch
    from cnnpipe.components.features import occupancy

    # 4x4 tile, one pixel masked: median 1, MAD 1 (noise 1.4826); 5 sigma above the median: > 8.413
    t = torch.tensor([[0, 1, 2, 1], [1, 0, 2, 1], [2, 1, 9, 8.5], [0, 2, float("nan"), 8.3]])
    b = ShardBatch(torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 4), {}, frames=t[None])
    assert occupancy(b).item() == pytest.approx(2 / 15)          # 9 and 8.5 of the 15 unmasked pixels
    # detector events: noise plus 3 straight tracks each; one event holds two events' tracks (a pile-up)
    gen = np.random.default_rng(0)
    frames = gen.normal(0, 1, (40, 32, 32)).astype(np.float32)
    for i in range(40):
        for _ in range(6 if i == 13 else 3):
            r = gen.integers(2, 30)
            frames[i, r, gen.integers(0, 8):gen.integers(20, 32)] += 20
    occ = occupancy(ShardBatch(torch.zeros(40, 2, 32, 32), torch.ones(40, 32, 32), {},
                               frames=torch.from_numpy(frames))).numpy()
    assert int(occ.argmax()) == 13 and occ[13] > 1.4 * np.delete(occ, 13).max()


def test_alignment_values():
    # mean thumbnail (2, 0): variance over pixels 1; variance across frames 1 in each pixel: alignment 1
    assert alignment(np.array([[1.0, -1.0], [3.0, 1.0]])) == pytest.approx(1.0)
    assert alignment(np.array([[1.0, 0.0], [0.0, 1.0]])) == 0.0            # mean (0.5, 0.5): flat
    assert alignment(np.ones((5, 4))) == 0.0 and alignment(np.zeros((1, 4))) == 0.0   # no spread, one frame


def test_sampled_knn_distance_matches_the_full_one_where_the_sample_is_everything_and_keeps_the_outlier():
    z = np.random.default_rng(3).normal(size=(400, 4))
    z[17] += 8.0                                                    # one isolated latent
    full = knn_distance(z, 5)
    np.testing.assert_allclose(knn_distance(z, 5, sample=400), full)   # a sample of all: the same
    np.testing.assert_allclose(knn_distance(z, 5, sample=0), full)
    part = knn_distance(z, 5, sample=100, seed=1)
    assert part.shape == (400,) and part.argmax() == 17 and (part >= full - 1e-12).all()  # fewer candidates: farther
    tiny = np.array([[0.0], [1.0], [3.0], [10.0]])
    sampled = knn_distance(tiny, 1, sample=2, seed=0)
    ref = np.sort(np.random.default_rng(0).choice(4, size=2, replace=False))  # the frames searched
    expected = [min(abs(tiny[i, 0] - tiny[j, 0]) for j in ref if j != i) for i in range(4)]
    np.testing.assert_allclose(sampled, expected)


def test_scoring_without_a_reconstruction_component_never_runs_the_decoder():
    from cnnpipe.components.batch import ShardBatch
    from cnnpipe.models.vae import ConvVAE
    from cnnpipe.score import batch_components

    torch.manual_seed(0)
    vae = ConvVAE(2, 16, [4, 8], 3).eval()
    x = torch.rand(5, 2, 16, 16)
    decoded = []
    decode = vae.decode
    vae.decode = lambda z: decoded.append(len(z)) or decode(z)
    pick = {c.name: c for c in components.per_shard()}
    with torch.no_grad():
        out = batch_components(ShardBatch(x, torch.ones(5, 16, 16), {}, vae=vae), [pick["sobel_peak"]])
        assert decoded == []
        np.testing.assert_allclose(out["mu"], vae.encode(x)[0].numpy(), rtol=1e-6)
        full = batch_components(ShardBatch(x, torch.ones(5, 16, 16), {}, vae=vae), [pick["recon_sobel"], pick["kl"]])
        assert decoded == [5]   # one decoder pass serves every reconstruction component
        recon, mu, _ = vae(x)
    np.testing.assert_allclose(full["mu"], mu.numpy(), rtol=1e-6)
    residual = (x[:, 1] - recon[:, 1]) ** 2 / vae.residual_scale[1]
    np.testing.assert_allclose(full["recon_sobel"], top_mean(residual, torch.ones(5, 16, 16, dtype=torch.bool),
                                                             0.03).numpy(), rtol=1e-5)


def test_layout_thumbnails_average_the_intensity_on_its_linear_scale():
    """The thumbnail behind layout_knn undoes the ingest's asinh stretch before averaging: a 2x2 tile whose
    linear intensities are 0, 1, 0.25, 0.5 has the thumbnail 0.4375, whatever stretch the models saw."""
    from cnnpipe.components.batch import ShardBatch
    from cnnpipe.models.vae import ConvVAE
    from cnnpipe.normalise import apply_scales
    from cnnpipe.score import batch_components

    linear = np.array([[[0.0, 1.0], [0.25, 0.5]]], np.float32)
    vae = ConvVAE(2, 2, [4], 2).eval()
    for method in ("asinh", "percentile"):
        n = config.parse({"ingest": {"normalise": {"method": method}}}).ingest.normalise
        stretched = apply_scales(linear, np.zeros(1), np.ones(1), method, n.asinh_softening)
        assert method == "percentile" or stretched[0, 1, 0] > 0.5        # 0.25 lifted to 0.63 by asinh
        x = torch.from_numpy(np.stack([stretched, np.zeros_like(stretched)], axis=1))
        out = batch_components(ShardBatch(x, torch.ones(1, 2, 2), {}, vae=vae), [], layout_side=1, stretch=n)
        assert out["layout"][0, 0] == pytest.approx(0.4375, abs=1e-6)
