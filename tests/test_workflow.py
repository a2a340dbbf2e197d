"""The whole workflow through Snakemake on tiny generated data (demo + malformed files)."""
import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import corpus
from cnnpipe.corners import shi_tomasi
from cnnpipe.population import population
from workflow_run import TINY, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    reasons = corpus.bad(wd / "bad")
    proc = snakemake(wd, TINY)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd, reasons


def test_manifest_lists_good_and_quarantined(run):
    wd, reasons = run
    df = pd.read_csv(wd / "results/manifest.csv", dtype={"key": str})
    q = df[df.status == "quarantined"]
    for name, why in reasons.items():
        assert q.source.str.endswith("bad/" + name).any(), name
    ok = df[df.status == "ok"]
    truth = pd.read_csv(wd / "results/demo/truth.csv", dtype={"key": str})
    frames = set(zip(ok.source, ok.key, ok.frame))
    assert set(zip(truth.source, truth.key, truth.frame)) <= frames  # every injected frame was ingested
    assert len(set(zip(ok.source, ok.key, ok.frame))) == 24 + 1 + 32  # sky + the wide frame + tracks
    assert set(ok.shard) == {0, 1}


def test_features_shards_match_frames(run):
    wd, _ = run
    total = 0
    for s in (0, 1):
        with h5py.File(wd / f"results/features/shard-{s}.h5") as f, h5py.File(wd / f"results/frames/shard-{s}.h5") as g:
            assert f["features"].shape[1:] == (2, 32, 32) and f["features"].shape[0] == g["frames"].shape[0]
            assert np.isfinite(f["features"][:]).all()
            total += f["features"].shape[0]
    df = pd.read_csv(wd / "results/manifest.csv")
    assert total == (df.status == "ok").sum()


def test_pixel_outliers_from_ingestion_reach_the_score_table(run):
    """The per-tile sharpness and coldness written at ingestion (raw pixels) are the score table's columns;
    the demo's cosmic-ray frames are the sharpest sky frames, its dead columns the coldest."""
    wd, _ = run
    results = wd / "results"
    scores = pd.concat([pd.read_parquet(p) for p in sorted((results / "scores").glob("*.parquet"))])
    for shard, g in scores.groupby("shard"):
        with h5py.File(results / "frames" / f"shard-{shard}.h5") as f:
            for stat in ("sharpness", "coldness"):
                np.testing.assert_allclose(g[stat].to_numpy(), f[stat][:][g["row"].to_numpy()], rtol=1e-6)
    truth = pd.read_csv(results / "demo/truth.csv", dtype={"key": str})
    sky = scores[~scores.key.str.startswith("/")].merge(truth, on=["source", "key", "frame"], how="left")
    for stat, kind in (("sharpness", "cosmic_rays"), ("coldness", "dead_column")):
        hit = sky.anomaly == kind
        assert hit.any() and sky[stat][hit].min() > sky[stat][~hit].max(), kind


def test_corner_reference_covers_each_population_and_the_scores_use_it(run):
    """One reference map per population, over all its frames; each tile's corner score is its largest
    ratio of Shi-Tomasi response to that map (recomputed here from the frames shard)."""
    wd, _ = run
    results = wd / "results"
    man = pd.read_csv(results / "manifest.csv", dtype={"key": str})
    ok = man[man.status == "ok"]
    with h5py.File(results / "models/corner_reference.h5") as f:
        names = [n.decode() for n in f["population"][:]]
        counts = dict(zip(names, f["frames"][:].tolist()))
        maps = dict(zip(names, f["corner"][:]))
        sigma = float(f.attrs["sigma"])
    assert counts == pd.Series(population(ok)).value_counts().to_dict()
    assert names == ["results/demo/sky", "results/demo/tracks.h5:/events"]   # a FITS folder, an HDF5 dataset
    scores = pd.read_parquet(results / "scores/shard-0.parquet")
    with h5py.File(results / "frames/shard-0.h5") as f:
        frames = f["frames"][:][scores["row"].to_numpy()]
    response = shi_tomasi(torch.from_numpy(frames), sigma).numpy()
    ref = np.stack([maps[p] for p in population(scores)])
    np.testing.assert_allclose(scores.corner.to_numpy(), (response / ref).max(axis=(1, 2)), rtol=1e-4)


def test_every_rule_has_log_and_benchmark(run):
    wd, _ = run
    assert (wd / "logs/manifest.log").read_text().count("quarantined:") >= 11
    assert sorted(p.name for p in (wd / "results/benchmarks/ingest").iterdir()) == ["shard-0.tsv", "shard-1.tsv"]


def test_config_typo_stops_before_any_job(tmp_path):
    proc = snakemake(tmp_path, {**TINY, "ingest": {"n_shard": 2}}, "-n")
    assert proc.returncode != 0
    assert "unknown key 'n_shard' (did you mean 'n_shards'?)" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_all_bad_inputs_fail_with_clear_message(tmp_path):
    corpus.bad(tmp_path / "bad")
    proc = snakemake(tmp_path, {"inputs": ["bad"], "ingest": {"n_shards": 2}})
    assert proc.returncode != 0
    assert "no usable frames in any input" in (tmp_path / "logs/manifest.log").read_text()


def test_training_rules_write_models_metrics_and_figures(run):
    """train_cnn / train_vae / generate ran: loadable models, per-epoch metrics, PNGs, logs, benchmarks."""
    from cnnpipe.checkpoint import load_model

    wd, _ = run
    for kind in ("cnn", "vae"):
        model, meta = load_model(wd / f"results/models/{kind}.pt", "cpu")
        assert meta["kind"] == kind
        m = pd.read_csv(wd / f"results/models/{kind}_metrics.csv")
        assert m["epoch"].tolist() == list(range(1, len(m) + 1)) and np.isfinite(m["train_loss"]).all()
        assert (wd / f"results/benchmarks/train_{kind}.tsv").is_file()
        assert "saved to results/models/" in (wd / f"logs/train_{kind}.log").read_text()
    assert meta["model"]["size"] == 32 and m["train_loss"].iloc[-1] < m["train_loss"].iloc[0]  # the VAE learned
    _, cnn_meta = load_model(wd / "results/models/cnn.pt", "cpu")
    assert cnn_meta["mode"] == "self-supervised" and len(cnn_meta["transforms"]) == 8  # demo: no labels
    for name in ("samples", "interpolation"):
        assert (wd / f"results/generate/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
