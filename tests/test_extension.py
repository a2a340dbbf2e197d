"""Adding things costs one module and one table row: a toy score component (seen in anomalies.csv, the
report and the config docs) and a toy input format (seen by ingestion and in the manifest)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from astropy.io import fits

from cnnpipe import components, readers
from cnnpipe.checkpoint import expected_config
from cnnpipe.components import Component
from cnnpipe.config import parse
from cnnpipe.configdocs import schema_markdown
from cnnpipe.corners import reference_maps, write_reference
from cnnpipe.ingest import ingest_shard
from cnnpipe.models import build
from cnnpipe.preprocess import preprocess_shard
from cnnpipe.rank import rank_scores, read_labels, write_rank_outputs
from cnnpipe.report import ReportInputs, build_context, render
from cnnpipe.score import score_shard
from cnnpipe.tables import read_table, write_csv

CPU = torch.device("cpu")
TOY = Component("toy", "brightest feature pixel (a toy component)", 2.0, (), "toy_component:brightest")


def _sky(folder, n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        fits.PrimaryHDU(rng.normal(100, 5, (size, size)).astype(np.float32)).writeto(folder / f"f{i}.fits")


def _config(inputs):
    return parse({"inputs": [str(p) for p in inputs], "ingest": {"n_shards": 1, "tile_size": 16, "tile_overlap": 0},
                  "train": {"vae": {"channels": [4], "latent_dim": 2}, "cnn": {"channels": [4], "hidden": 4}},
                  "score": {"k": 2}})


def _ingest(cfg, tmp_path):
    frames, features = tmp_path / "frames" / "shard-0.h5", tmp_path / "features" / "shard-0.h5"
    manifest = ingest_shard(cfg, 0, frames)
    write_csv(manifest, tmp_path / "manifest.csv")
    preprocess_shard(cfg, frames, features, CPU)
    return frames, features, read_table(tmp_path / "manifest.csv")


def test_a_new_score_component_is_one_module_and_one_row(tmp_path, monkeypatch):
    monkeypatch.setattr(components, "REGISTRY", [*components.REGISTRY, TOY])
    _sky(tmp_path / "sky")
    cfg = _config([tmp_path / "sky"])
    assert cfg.score.weights["toy"] == 2.0                      # the schema's default comes from the row
    frames, features, manifest = _ingest(cfg, tmp_path)
    torch.manual_seed(0)
    vae = build(expected_config(cfg, "vae")).eval()
    cnn = build(dict(expected_config(cfg, "cnn"), n_classes=2)).eval()
    maps = reference_maps([frames], manifest, cfg.score.corner_sigma, dict(hflip=True, vflip=True, rot90=True), CPU)
    write_reference(tmp_path / "ref.h5", maps, cfg.score.corner_sigma, (1.5, 1.0))
    scores = score_shard(features, frames, manifest, 0, vae, cnn, {"mode": "supervised"}, tmp_path / "ref.h5", CPU)
    ranked, z = rank_scores(cfg, [scores], read_labels(None))
    out = {n: tmp_path / f"{n}.csv" for n in ("anomalies", "by_frame", "latent_map")}
    write_rank_outputs(ranked, z, out["anomalies"], out["by_frame"], out["latent_map"])

    anomalies = read_table(out["anomalies"])
    with h5py.File(features) as f:
        expected = f["features"][:, 0].max(axis=(1, 2))
    by_row = dict(zip(zip(manifest.source, manifest["index"]), expected[manifest.row]))
    got = [by_row[(s, i)] for s, i in zip(anomalies.source, anomalies["index"])]
    np.testing.assert_allclose(anomalies["toy"], got, rtol=1e-6)
    last = [c for c in components.names() if c != "toy" and c in anomalies.columns][-1]   # the table's order
    assert list(anomalies.columns).index("toy") == list(anomalies.columns).index(last) + 1

    ctx, _ = build_context(ReportInputs(out["anomalies"], tmp_path / "manifest.csv"), cfg)
    assert ("toy", TOY.description) in ctx["components"]
    assert TOY.description in render(ctx)
    docs = schema_markdown()
    assert "| `score.weights.toy` | `2.0` |" in docs and TOY.description[1:] in docs


def test_a_new_input_format_is_one_module_and_one_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "FORMATS", [*readers.FORMATS, "toy_reader"])
    _sky(tmp_path / "in" / "sky", n=2)
    stack = np.random.default_rng(1).normal(0, 1, (3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "in" / "stack.npy", stack)
    (tmp_path / "in" / "broken.npy").write_bytes(b"not numpy")
    assert readers.file_kind("x.NPY") == "npy" and ".npy" in readers.suffixes()
    cfg = _config([tmp_path / "in"])
    frames, _, manifest = _ingest(cfg, tmp_path)

    npy = manifest[manifest.source.str.endswith("stack.npy")]
    assert npy.status.tolist() == ["ok"] * 3 and npy["index"].tolist() == [0, 1, 2]
    assert set(npy.population) == {f"npy:{tmp_path / 'in'}"}
    assert set(manifest[manifest.source.str.endswith(".fits")].population) == {str(tmp_path / "in" / "sky")}
    broken = manifest[manifest.source.str.endswith("broken.npy")]
    assert broken.status.tolist() == ["quarantined"] and broken.reason.iloc[0].startswith("unreadable .npy")
    with h5py.File(frames) as f:
        assert f["frames"].shape[0] == len(manifest[manifest.status == "ok"]) == 5


def test_unknown_format_is_refused_until_registered(tmp_path):
    (tmp_path / "stack.npy").write_bytes(b"")
    assert readers.resolve_inputs([str(tmp_path / "stack.npy")])[0][1].startswith("unknown file type")
    with pytest.raises(ValueError, match="no reader for format 'npy'"):
        readers.reader("npy")
