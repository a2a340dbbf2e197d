"""The training loop: streaming split and order, loss falls, digits accuracy, exact resume, refused files."""
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from cnnpipe import checkpoint
from cnnpipe.cli import main as cli
from cnnpipe.config import parse
from cnnpipe.errors import UserError
from cnnpipe.pixel_outliers import STATS
from cnnpipe.train import Part, ShardStream, checkpoint_path, plan_data, train


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tests share two cores, and oversubscribed threads slow training tenfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_dataset(d: Path, x: np.ndarray, labels: np.ndarray | None = None, n_shards: int = 2,
                  tiles_per_frame: int = 1, source: str = "data.h5") -> tuple[list[str], Path]:
    """Features shards + manifest for feature maps ``x`` (N, C, H, W); ``tiles_per_frame`` rows share a frame."""
    d.mkdir(parents=True, exist_ok=True)
    n = len(x)
    labels = np.full(n, -1, np.int64) if labels is None else labels.astype(np.int64)
    shard_of = np.arange(n) % n_shards
    rows, paths = [], []
    for s in range(n_shards):
        idx = np.flatnonzero(shard_of == s)
        p = d / f"shard-{s}.h5"
        with h5py.File(p, "w") as f:
            f["features"] = x[idx].astype(np.float32)
            f["valid"] = np.ones((len(idx), *x.shape[2:]), np.float32)
            f["label"] = labels[idx]
            for stat in STATS:
                f[stat] = np.zeros(len(idx), np.float32)
        paths.append(str(p))
        for r, i in enumerate(idx):
            rows.append(dict(source=source, key="/x", index=int(i), shard=s, row=r, height=8, width=8,
                             status="ok", reason="", frame=int(i) // tiles_per_frame, y0=0, x0=0,
                             label=int(labels[i]), header="{}"))
    man = d / "manifest.csv"
    pd.DataFrame(rows).to_csv(man, index=False)
    return paths, man


def blobs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Gaussian blobs at random places (intensity) and their gradient magnitude (second channel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(3, size - 3, (2, n, 1, 1))
    img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0) + 0.05 * rng.standard_normal((n, size, size))
    gy, gx = np.gradient(img, axis=(1, 2))
    return np.stack([img, np.hypot(gy, gx)], 1).astype(np.float32)


def tiny_cfg(**train):
    base = {"batch_size": 16, "val_fraction": 0.2, "shuffle_buffer": 32, "lr": 0.003, "patience": 50,
            "cnn": {"epochs": 3, "channels": [4, 8], "hidden": 16},
            "vae": {"epochs": 3, "channels": [8, 16], "latent_dim": 4, "beta": 0.1}}
    for k, v in train.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) else v
    # every symmetry off: the self-supervised CNN then has the 8 orientations to tell apart
    return parse({"train": base, "ingest": {"tile_size": 32}, "preprocess": {"pool_levels": 1},
                  "augment": {"hflip": False, "vflip": False, "rot90": False}})


@pytest.fixture(scope="module")
def blob_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("blobs"), blobs(96), tiles_per_frame=3)


def test_val_split_is_by_frame_and_deterministic(blob_data):
    feats, man = blob_data
    plan = plan_data(feats, man, 0.3)
    again = plan_data(feats, man, 0.3)
    assert all(np.array_equal(a.rows, b.rows) for a, b in zip(plan.val, again.val))
    df = pd.read_csv(man)
    side = {}
    for parts, name in ((plan.train, "train"), (plan.val, "val")):
        for p in parts:
            s = int(Path(p.path).stem.split("-")[1])
            for r in p.rows:
                frame = int(df[(df["shard"] == s) & (df["row"] == r)]["frame"].iloc[0])
                assert side.setdefault(frame, name) == name  # all tiles of a frame on one side
    n_val = sum(len(p.rows) for p in plan.val)
    assert 0 < n_val < 96 and n_val % 3 == 0 and len(side) == 32


def test_stream_yields_every_row_once_in_a_seeded_order(blob_data):
    feats, man = blob_data
    parts = [Part(p, np.arange(48), np.arange(48) + 100 * i) for i, p in enumerate(feats)]
    stream = ShardStream(parts, batch=10, buffer=16, shuffle=True, chunk=8)

    def order(seed):
        stream.set_seed(seed)
        batches = list(stream)
        assert [len(b["y"]) for b in batches] == [10] * 9 + [6] and len(stream) == 10
        return torch.cat([b["y"] for b in batches]).tolist()

    a, b, c = order(1), order(1), order(2)
    assert sorted(a) == sorted(list(range(48)) + list(range(100, 148)))
    assert a == b and a != c and a != sorted(a)
    with h5py.File(feats[1]) as f:  # rows carry their own data
        stream.set_seed(3)
        first = next(iter(stream))
        i = int(first["y"][0])
        if i >= 100:
            assert np.array_equal(first["x"][0].numpy(), f["features"][i - 100])


def test_loss_falls_on_tiny_data(blob_data, tmp_path):
    feats, man = blob_data
    cfg = tiny_cfg(vae={"epochs": 4})
    train(cfg, "vae", feats, man, tmp_path / "vae.pt", tmp_path / "m.csv")
    m = pd.read_csv(tmp_path / "m.csv")
    assert list(m["epoch"]) == [1, 2, 3, 4]
    assert m["train_loss"].iloc[-1] < 0.7 * m["train_loss"].iloc[0]
    assert m["val_loss"].iloc[-1] < m["val_loss"].iloc[0]
    assert {"train_recon", "train_recon_sobel", "train_kl", "val_recon", "lr", "samples_per_s"} <= set(m.columns)
    model, meta = checkpoint.load_model(tmp_path / "vae.pt", "cpu")
    assert meta["kind"] == "vae" and model(torch.zeros(1, 2, 16, 16))[0].shape == (1, 2, 16, 16)


def test_kl_warmup_ramps_the_weight_and_warmup_epochs_are_never_the_best(blob_data, tmp_path):
    from cnnpipe.models.vae import VAEObjective

    cfg = tiny_cfg(vae={"epochs": 4, "kl_warmup_epochs": 2})
    task = VAEObjective(cfg)
    for done, scale in [(0.0, 0.0), (0.5, 0.25), (1.0, 0.5), (2.0, 1.0), (3.5, 1.0)]:
        task.set_progress(done)
        assert task.kl_scale == scale
    task = VAEObjective(tiny_cfg(vae={"kl_warmup_epochs": 0}))
    task.set_progress(0.0)
    assert task.kl_scale == 1.0
    feats, man = blob_data
    s = train(cfg, "vae", feats, man, tmp_path / "vae.pt", tmp_path / "m.csv")
    assert s["best_epoch"] >= 2  # epoch 1 trained with a KL weight below beta: never kept as the model


def test_self_supervised_cnn_learns_rotations(blob_data, tmp_path):
    feats, man = blob_data
    x = blobs(96)
    x[:, 0, :2, :8] += 1.0  # a bar on the left half of the top edge: each of the 8 orientations looks different
    feats, man = write_dataset(tmp_path / "d", x)
    cfg = tiny_cfg(cnn={"epochs": 6}, lr=0.01)
    s = train(cfg, "cnn", feats, man, tmp_path / "cnn.pt", tmp_path / "m.csv")
    assert s["mode"] == "self-supervised" and len(s["classes"]) == 8
    assert s["val_accuracy"] > 0.6  # chance is 1/8
    conf = np.array(s["confusion"])
    assert conf.shape == (8, 8) and conf.sum() == 8 * s["n_val"]


def digits(tmp: Path):
    from sklearn.datasets import load_digits

    from cnnpipe.preprocess import features

    d = load_digits()
    frames = np.kron(d.images / 16.0, np.ones((4, 4))).astype(np.float32)  # 8x8 -> 32x32
    feats, _ = features(torch.from_numpy(frames), pool_levels=1)            # -> 2 x 16 x 16
    return write_dataset(tmp, feats.numpy(), labels=d.target)


def test_supervised_cnn_on_digits_reaches_90_percent(tmp_path):
    feats, man = digits(tmp_path / "digits")
    cfg = parse({"train": {"batch_size": 32, "val_fraction": 0.2, "lr": 0.003, "shuffle_buffer": 512,
                           "cnn": {"epochs": 4, "channels": [16, 32], "hidden": 64}},
                 "augment": {"hflip": False, "vflip": False, "rot90": False, "translate": 1},
                 "ingest": {"tile_size": 32}})
    s = train(cfg, "cnn", feats, man, tmp_path / "cnn.pt", tmp_path / "m.csv")
    assert s["mode"] == "supervised" and s["classes"] == list(range(10))
    assert s["val_accuracy"] >= 0.9, s
    conf = np.array(s["confusion"])
    assert conf.sum() == s["n_val"] and np.trace(conf) / conf.sum() == pytest.approx(s["val_accuracy"])
    assert Path(tmp_path / "m.json").is_file()


@pytest.mark.parametrize("kind", ["vae", "cnn"])
def test_resume_gives_identical_weights(blob_data, tmp_path, kind):
    feats, man = blob_data
    cfg = tiny_cfg(cnn={"epochs": 4}, vae={"epochs": 4})
    full = tmp_path / "full.pt"
    train(cfg, kind, feats, man, full, tmp_path / "full.csv")
    assert full.exists() and not checkpoint_path(full).exists()  # the checkpoint goes once the model is saved
    part = tmp_path / "part.pt"
    assert train(cfg, kind, feats, man, part, tmp_path / "part.csv", stop_after=2) == {"interrupted_after": 2}
    assert not part.exists() and checkpoint_path(part).exists()
    train(cfg, kind, feats, man, part, tmp_path / "part.csv", resume=True)
    a, b = checkpoint.load(full)["state_dict"], checkpoint.load(part)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = pd.read_csv(tmp_path / "full.csv"), pd.read_csv(tmp_path / "part.csv")
    assert ma["train_loss"].tolist() == mb["train_loss"].tolist() and len(ma) == 4


def test_same_config_same_weights_and_seed_matters(blob_data, tmp_path):
    feats, man = blob_data
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = tiny_cfg(vae={"epochs": 1})
        cfg = parse({**cfg.raw, "seed": seed})
        train(cfg, "vae", feats, man, tmp_path / f"{name}.pt", tmp_path / f"{name}.csv")
    a, b, c = (checkpoint.load(tmp_path / f"{n}.pt")["state_dict"] for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_with_other_settings_is_refused(blob_data, tmp_path):
    feats, man = blob_data
    train(tiny_cfg(vae={"epochs": 2}), "vae", feats, man, tmp_path / "v.pt", tmp_path / "m.csv", stop_after=1)
    with pytest.raises(UserError, match="different model config"):
        train(tiny_cfg(vae={"epochs": 2, "latent_dim": 6}), "vae", feats, man, tmp_path / "v.pt",
              tmp_path / "m.csv", resume=True)
    with pytest.raises(UserError, match="different training settings"):
        train(tiny_cfg(vae={"epochs": 2}, lr=0.01), "vae", feats, man, tmp_path / "v.pt", tmp_path / "m.csv",
              resume=True)


class Evil:
    def __reduce__(self):
        return (print, ("this ran code",))


@pytest.fixture()
def trained_vae(blob_data, tmp_path):
    feats, man = blob_data
    train(tiny_cfg(vae={"epochs": 1}), "vae", feats, man, tmp_path / "vae.pt", tmp_path / "m.csv")
    return tmp_path / "vae.pt"


def test_tampered_and_foreign_files_are_refused(trained_vae, tmp_path, capsys):
    model, meta = checkpoint.load_model(trained_vae, "cpu")
    assert meta["model"]["latent_dim"] == 4
    ck = torch.load(trained_vae, weights_only=True)
    ck["state_dict"]["mu.bias"][0] += 1.0           # edited weights, digest left as it was
    torch.save(ck, tmp_path / "edited.pt")
    with pytest.raises(UserError, match="has been modified"):
        checkpoint.load_model(tmp_path / "edited.pt", "cpu")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(UserError, match="not a cnnpipe weights file"):
        checkpoint.load_model(tmp_path / "evil.pt", "cpu")
    assert "this ran code" not in capsys.readouterr().out
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a cnnpipe checkpoint"):
        checkpoint.load_model(tmp_path / "other.pt", "cpu")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(UserError, match="not a cnnpipe weights file"):
        checkpoint.load_model(tmp_path / "junk.pt", "cpu")
    with pytest.raises(UserError, match=r"different model config \(latent_dim: checkpoint 4 vs config 8\)"):
        checkpoint.load_model(trained_vae, "cpu", expected={"latent_dim": 8})


def test_cli_refuses_tampered_model_in_one_line(trained_vae, blob_data, tmp_path, capsys):
    feats, man = blob_data
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil(), protocol=2))
    rc = cli(["generate", "--model", str(tmp_path / "evil.pt"), "--features", *feats, "--manifest", str(man),
              "--samples", str(tmp_path / "g" / "s.png"), "--interpolation", str(tmp_path / "g" / "i.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a cnnpipe weights file" in err[0]


def test_cli_train_generate_denoise(blob_data, tmp_path):
    feats, man = blob_data
    settings = tiny_cfg(vae={"epochs": 1}).raw
    import json
    s = json.dumps(settings)
    assert cli(["train-vae", "--settings", s, "--threads", "1", "--features", *feats, "--manifest", str(man),
                "--out", str(tmp_path / "vae.pt"), "--metrics", str(tmp_path / "vae.csv")]) == 0
    assert cli(["generate", "--settings", s, "--model", str(tmp_path / "vae.pt"), "--features", *feats,
                "--manifest", str(man), "--samples", str(tmp_path / "gen" / "samples.png"),
                "--interpolation", str(tmp_path / "gen" / "interpolation.png"), "--n", "4", "--steps", "3"]) == 0
    for name in ("samples.png", "interpolation.png"):
        assert (tmp_path / "gen" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli(["denoise", "--settings", s, "--model", str(tmp_path / "vae.pt"), "--features", *feats,
                "--manifest", str(man), "--source", "data.h5", "--out-dir", str(tmp_path / "den")]) == 0
    with h5py.File(tmp_path / "den" / "data.denoised.h5") as f:
        assert f["reconstruction"].shape == (96, 2, 16, 16) and f.attrs["source"] == "data.h5"
        assert f.attrs["model"] == str(tmp_path / "vae.pt")


@pytest.mark.slow
def test_torchrun_two_ranks_with_gloo(blob_data, tmp_path):
    feats, man = blob_data
    import json
    s = json.dumps({**tiny_cfg(vae={"epochs": 2}).raw, "device": "cpu"})
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "cnnpipe.cli", "train-vae",
           "--settings", s, "--threads", "1", "--features", *feats, "--manifest", str(man),
           "--out", str(tmp_path / "vae.pt"), "--metrics", str(tmp_path / "m.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, meta = checkpoint.load_model(tmp_path / "vae.pt", "cpu")
    assert meta["kind"] == "vae" and len(pd.read_csv(tmp_path / "m.csv")) == 2
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["world_size"] == 2 and summary["active_latent_dims"] in range(5)   # of latent_dim 4


def test_denoise_fits_input_gives_fits_with_provenance(tmp_path):
    from astropy.io import fits

    feats, man = write_dataset(tmp_path / "d", blobs(12), source="sky/field.fits.gz", n_shards=1)
    train(tiny_cfg(vae={"epochs": 1}), "vae", feats, man, tmp_path / "vae.pt", tmp_path / "m.csv")
    assert cli(["denoise", "--model", str(tmp_path / "vae.pt"), "--features", *feats, "--manifest", str(man),
                "--source", "sky/field.fits.gz", "--out-dir", str(tmp_path / "den")]) == 0
    with fits.open(tmp_path / "den" / "field.denoised.fits") as hdul:
        assert hdul[0].header["CNPSRC"] == "sky/field.fits.gz" and hdul[0].header["CNPMODEL"].endswith("vae.pt")
        assert len(hdul) == 13 and hdul[1].data.shape == (16, 16)
        assert [h.header["CNPINDEX"] for h in hdul[1:]] == list(range(12))


def test_labels_csv_makes_the_cnn_supervised(tmp_path):
    x = blobs(64)
    marked = np.arange(64) % 2 == 1
    x[marked, 0, 6:10, :] += 1.0  # class "bar": a horizontal band
    feats, man = write_dataset(tmp_path / "d", x)
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"source": "data.h5", "key": "/x", "index": np.arange(60),  # 4 frames left unlabelled
                  "label": np.where(marked[:60], "bar", "plain")}).to_csv(csv, index=False)
    cfg = tiny_cfg(cnn={"epochs": 5, "labels_csv": str(csv)}, lr=0.01)
    s = train(cfg, "cnn", feats, man, tmp_path / "cnn.pt", tmp_path / "m.csv")
    assert s["mode"] == "supervised" and s["classes"] == ["bar", "plain"]
    assert s["n_train"] + s["n_val"] == 60 and s["val_accuracy"] >= 0.9
    _, meta = checkpoint.load_model(tmp_path / "cnn.pt", "cpu")
    assert meta["classes"] == ["bar", "plain"] and meta["mode"] == "supervised"


def test_sample_parts_is_uniform_over_every_part_without_repeats():
    from cnnpipe.data import sample_parts

    parts = [Part("a", np.arange(0, 6000, 2), np.arange(3000)), Part("b", np.arange(1000) + 7, -np.arange(1000)),
             Part("c", np.arange(10), np.zeros(10, np.int64))]
    assert sample_parts(parts, 4010, np.random.default_rng(0)) is parts            # all rows: nothing drawn
    counts = np.zeros(3)
    for seed in range(50):
        got = sample_parts(parts, 401, np.random.default_rng(seed))
        assert sum(len(p.rows) for p in got) == 401 and [p.path for p in got] == ["a", "b", "c"]
        for p, src in zip(got, parts):
            assert np.all(np.diff(p.rows) > 0) and np.isin(p.rows, src.rows).all()   # sorted, no repeats
            assert np.array_equal(p.targets, src.targets[np.searchsorted(src.rows, p.rows)])  # targets follow
        counts += [len(p.rows) for p in got]
    np.testing.assert_allclose(counts / 50, [300, 100, 1], rtol=0.05, atol=0.5)  # proportional to each part's size
    a, b = sample_parts(parts, 50, np.random.default_rng(1)), sample_parts(parts, 50, np.random.default_rng(1))
    assert all(np.array_equal(x.rows, y.rows) for x, y in zip(a, b))


def test_the_step_budget_bounds_training_whatever_the_data_size(tmp_path):
    """max_steps fixes the rows trained per epoch (and the validation sample is capped), so three times
    the data costs the same; without a budget every epoch is a full pass."""
    cfg = tiny_cfg(vae={"epochs": 2, "max_steps": 4}, val_rows=10)
    seen = {}
    for n in (96, 288):
        feats, man = write_dataset(tmp_path / f"d{n}", blobs(n, seed=n), tiles_per_frame=3)
        summary = train(cfg, "vae", feats, man, tmp_path / f"v{n}.pt", tmp_path / f"m{n}.csv")
        seen[n] = pd.read_csv(tmp_path / f"m{n}.csv")["train_rows"].tolist()
        assert summary["n_val"] == 10 and summary["n_train"] > 2 * 16 * 2
    assert seen[96] == seen[288] == [2 * 16, 2 * 16]   # 4 steps over 2 epochs, 16 rows a step
    full = train(tiny_cfg(vae={"epochs": 1, "max_steps": 0}), "vae", feats, man, tmp_path / "f.pt", tmp_path / "f.csv")
    assert pd.read_csv(tmp_path / "f.csv")["train_rows"].tolist() == [full["n_train"]]
