"""Hostile inputs, resource limits and silent config mistakes: nothing crashes, hangs, leaks or lies.

The corpus (tests/hostile_corpus.py) is made on the fly: gzip and HDF5 bombs, inputs whose data live in
other files, non-regular files, symlink loops, a 1200-level-deep folder, formula-like names, a population
of one. It runs through ``cnnpipe ingest`` (each case under a timeout, peak RSS measured) and, in the slow
test, through the whole Snakemake workflow. Disk-full tests mount a small tmpfs (root only, as in CI).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits

import corpus
import hostile_corpus as hc
from workflow_run import REPO, snakemake
from cnnpipe import checkpoint, config
from cnnpipe.csvcells import neutralise, restore
from cnnpipe.errors import UserError
from cnnpipe.labels import read_labels
from cnnpipe.limits import Limits
from cnnpipe.models import build
from cnnpipe.readers import Block, Problem, Unit, plan_units, read_unit, resolve_inputs
from cnnpipe.rank import ensemble, small_populations

CNNPIPE = os.path.join(os.path.dirname(sys.executable), "cnnpipe")
RSS_LIMIT_MB = 2500


#: runs argv[1:] and reports its peak RSS (its only child's): exact per command, whatever ran before
_MEASURE = ("import resource, subprocess, sys\n"
            "rc = subprocess.run(sys.argv[1:]).returncode\n"
            "print(f'peak-rss-kb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
            "sys.exit(rc)\n")


def run_measured(cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str, float]:
    """Run ``cmd``; return (exit code, stderr, its peak RSS in MB). Killed (whole group) after ``timeout`` s."""
    proc = subprocess.Popen([sys.executable, "-c", _MEASURE, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        pytest.fail(f"hung: {' '.join(cmd)[:200]} still running after {timeout} s")
    lines = err.rstrip().splitlines()
    peak = int(lines[-1].split()[-1]) / 1024
    return proc.returncode, "\n".join(lines[:-1]), peak


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    outside = hc.outside(root / "outside")
    (root / "in").mkdir()
    yield root, hc.hostile(root / "in" / "hostile", outside), hc.readable(root / "in" / "readable")
    hc.remove_deep(root / "in" / "readable")


def _ingest(root: Path, settings: dict, out: Path, *extra: str, timeout: float = 300) -> tuple[int, str, float]:
    return run_measured([CNNPIPE, "ingest", "--settings", json.dumps(settings), "--shard", "0", "--out",
                         str(out / "s.h5"), "--manifest", str(out / "m.csv"), *extra], timeout, cwd=root)


def test_hostile_corpus_through_ingest(hostile):
    """Every hostile file quarantined with a one-line reason naming what was refused; every readable file
    read exactly once; no traceback, no hang, bounded memory, no byte of an outside file in the outputs."""
    from cnnpipe.tables import read_table as read_csv

    root, cases, readable = hostile
    out = root / "out"
    names = hc.formula(root)
    size = sum(os.path.getsize(p) for p, why in resolve_inputs([str(root)]) if not why)  # rglob would recurse
    rc, err, peak = _ingest(root, {"inputs": [*names, "in"], "ingest": {"n_shards": 1}}, out)
    assert rc == 0 and "Traceback" not in err, err[-3000:]
    print(f"\nhostile corpus: {len(cases)} hostile + {len(readable)} readable files, {size / 1e6:.1f} MB on disk, "
          f"ingest peak RSS {peak:.0f} MB")
    assert peak < RSS_LIMIT_MB
    man = read_csv(out / "m.csv")
    for name, why in cases.items():
        rows = man[man.source == f"in/hostile/{name}"]
        assert len(rows) == 1 and rows.status.iloc[0] == "quarantined", (name, rows)
        assert why in rows.reason.iloc[0] and "\n" not in rows.reason.iloc[0], (name, rows.reason.iloc[0])
    frames = man[man.status == "ok"].drop_duplicates(["source", "key", "frame"])
    assert sorted(frames.source) == sorted([*names, *(f"in/readable/{n}" for n in readable)])
    text = (out / "m.csv").read_text()
    assert all(f"\n'{n}," in text for n in names) and not any(f"\n{n}," in text for n in names)
    for blob in [(out / "s.h5").read_bytes(), text.encode()]:
        assert hc.MARKER.encode() not in blob


def test_each_hostile_case_alone_is_quick_and_small(hostile):
    """Each case on its own, under a 60 s timeout: none hangs, none takes memory beyond its limit."""
    root, cases, _ = hostile
    for name in cases:
        out = root / "one" / name.replace(".", "_")
        rc, err, peak = _ingest(root, {"inputs": [f"in/hostile/{name}"], "ingest": {"n_shards": 1}}, out, timeout=60)
        assert rc == 0 and "Traceback" not in err, (name, err[-2000:])
        assert peak < RSS_LIMIT_MB, (name, peak)


def test_readers_refuse_external_links_when_named(hostile):
    root, _, _ = hostile
    units = plan_units([(str(root / "in/hostile/h5_extlink.h5"), "")], 1, "/data")
    assert [u.kind for u in units] == ["bad"]
    assert "'/data' is an external link to" in units[0].reason and "read only from itself" in units[0].reason


def test_limits_are_config_and_raising_them_reads_more(tmp_path):
    """max_file_bytes refuses from the header alone; max_read_bytes bounds each read; raising max_frame_pixels
    lets a large frame through."""
    cube = np.random.default_rng(0).normal(size=(6, 32, 32)).astype(np.float32)
    fits.PrimaryHDU(cube).writeto(tmp_path / "cube.fits")
    hc._gzip_zeros(tmp_path / "bomb.fits.gz", hc._header((64, 1024, 1024)), 64 * 1024 * 1024 * 4)
    small = Limits(max_file_bytes=2 ** 20)
    recs = list(read_unit(Unit(str(tmp_path / "bomb.fits.gz"), "fits"), limits=small))
    assert len(recs) == 1 and "max_file_bytes" in recs[0].reason
    per_read = Limits(max_read_bytes=2 * 32 * 32 * 8)  # two frames at a time, whatever chunk_frames says
    blocks = list(read_unit(Unit(str(tmp_path / "cube.fits"), "fits"), chunk_frames=64, limits=per_read))
    assert [len(b.images) for b in blocks] == [2, 2, 2]
    np.testing.assert_array_equal(np.concatenate([b.images for b in blocks]), cube)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = cube
    units = plan_units([(str(tmp_path / "x.h5"), "")], 1, None, limits=per_read)
    assert [len(b.images) for u in units for b in read_unit(u, 64, None, limits=per_read)] == [2, 2, 2]
    tiny = Limits(max_frame_pixels=1000)
    assert "max_frame_pixels" in plan_units([(str(tmp_path / "x.h5"), "")], 1, None, limits=tiny)[0].reason
    assert isinstance(next(read_unit(Unit(str(tmp_path / "cube.fits"), "fits"), limits=tiny)), Problem)
    assert isinstance(next(read_unit(Unit(str(tmp_path / "cube.fits"), "fits"), limits=Limits())), Block)


def test_out_of_memory_quarantines_the_file_and_the_shard_goes_on(tmp_path, monkeypatch):
    from cnnpipe import ingest

    good = corpus.good(tmp_path / "good")
    real = ingest.prepare

    def prepare(images, cfg, **kw):
        if images.shape[1:] == (16, 16):  # mef.fits's second image
            raise MemoryError
        return real(images, cfg, **kw)

    monkeypatch.setattr(ingest, "prepare", prepare)
    cfg = config.parse({"inputs": [str(tmp_path / "good")], "ingest": {"n_shards": 1}})
    rows = ingest.ingest_shard(cfg, 0, tmp_path / "s.h5")
    bad = rows[rows.status == "quarantined"]
    assert len(bad) == 1 and bad.source.iloc[0].endswith("mef.fits") and "out of memory" in bad.reason.iloc[0]
    ok = rows[rows.status == "ok"].drop_duplicates(["source", "key", "frame"])
    assert len(ok) == sum(len(v) for v in good.values()) - 1  # every other frame kept


@pytest.fixture
def readable(tmp_path):
    yield hc.readable(tmp_path / "r")
    hc.remove_deep(tmp_path / "r")


def test_input_walk_is_safe(tmp_path, readable):
    """Loops end, each file once, outputs never entered, a 1200-deep folder is no RecursionError, a FIFO
    is listed with a reason and never opened, globs follow the same rules."""
    os.mkfifo(tmp_path / "r" / "pipe.fits")
    for d in ("results/frames", "results/demo/sky", "logs"):
        (tmp_path / "w" / d).mkdir(parents=True)
    fits.PrimaryHDU(hc._img(1)).writeto(tmp_path / "w/results/frames/x.fits")
    fits.PrimaryHDU(hc._img(2)).writeto(tmp_path / "w/results/demo/sky/s.fits")
    fits.PrimaryHDU(hc._img(3)).writeto(tmp_path / "w/logs/l.fits")
    fits.PrimaryHDU(hc._img(4)).writeto(tmp_path / "w/mine.fits")
    found = dict(resolve_inputs([str(tmp_path / "r")]))
    assert sorted(p for p, why in found.items() if not why) == sorted(str(tmp_path / "r" / n) for n in readable)
    assert "named pipe" in found[str(tmp_path / "r" / "pipe.fits")]
    globbed = dict(resolve_inputs([str(tmp_path / "r" / "**" / "*.fits")]))
    assert sorted(p for p, why in globbed.items() if not why) == sorted(found_ok for found_ok, why in found.items()
                                                                          if not why)
    w = tmp_path / "w"
    exclude, keep = [str(w / "results"), str(w / "logs")], [str(w / "results/demo")]
    walked = resolve_inputs([str(w)], exclude, keep)
    assert walked == [(str(w / "mine.fits"), "")]
    assert resolve_inputs([str(w / "results/demo/sky")], exclude, keep) == [(str(w / "results/demo/sky/s.fits"), "")]
    named = resolve_inputs([str(w / "results/frames/x.fits")], exclude, keep)
    assert "inside a folder this workflow writes its outputs to" in named[0][1]


def test_config_refuses_silent_mistakes():
    cases = {
        "score/power": ({"score": {"power": float("nan")}}, "not a finite number"),
        "asinh": ({"ingest": {"normalise": {"asinh_softening": float("inf")}}}, "not a finite number"),
        "overlap": ({"ingest": {"tile_size": 32, "tile_overlap": 32}}, "tile_overlap (32) must be less than"),
        "pooling": ({"ingest": {"tile_size": 16, "tile_overlap": 4}, "preprocess": {"pool_levels": 2}},
                    "train/vae/channels has 3 stride-2 layers"),
        "shards": ({"ingest": {"n_shards": 100000}}, "maximum of 1024"),
        "diffuse width 0": ({"score": {"diffuse_sigmas": [0, 8]}}, "score/diffuse_sigmas (0, 8) must be a width above 0"),
        "diffuse band reversed": ({"score": {"diffuse_sigmas": [8, 2]}}, "then 0 (no band-pass) or a larger width"),
        "weight typo": ({"score": {"weights": {"recno": 1}}}, "unknown key 'recno' (did you mean 'recon'?)"),
    }
    for name, (raw, why) in cases.items():
        with pytest.raises(config.ConfigError) as err:
            config.parse(raw)
        assert why in str(err.value) and "\n" not in str(err.value), (name, str(err.value))
    merged = config.parse({"score": {"weights": {"cnn": 0.25}}}).score.weights
    defaults = config.parse({}).score.weights
    assert merged == {**defaults, "cnn": 0.25} and merged["recon_sobel"] == 1.0 and defaults["cnn"] == 1.0


def test_config_yaml_nan_is_refused_before_snakemake_plans(tmp_path):
    (tmp_path / "c.yaml").write_text("score:\n  power: .nan\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                           str(tmp_path), "--configfile", str(tmp_path / "c.yaml"), "--cores", "1", "-n"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "config error at 'score/power': nan is not a finite number" in proc.stdout + proc.stderr


def test_labels_file_mistakes(tmp_path, caplog):
    path = tmp_path / "labels.csv"
    head = "source,key,index,label\n"
    path.write_text(head + "a.fits,0,0,boring\na.fits,0,0,boring\nb.fits,0,1,interesting\na.fits,0,0,boring\n")
    with caplog.at_level(logging.WARNING):
        df = read_labels(path)
    assert df.values.tolist() == [["a.fits", "0", 0, "boring"], ["b.fits", "0", 1, "interesting"]]
    assert "2 repeated rows used once (lines 3, 5)" in caplog.text
    errors = {
        head + "a.fits,0,0,boring\nb.fits,0,0,boring\na.fits,0,0,interesting\n":
            "a.fits [0] 0 is labelled both ways (line 2 'boring', line 4 'interesting')",
        head + "a.fits,0,x1,boring\n": "line 2: index 'x1' is not an integer",
        head + "a.fits,0,1.5,boring\n": "line 2: index '1.5' is not an integer",
        head + "a.fits,0,1,weird\n": "line 2: label 'weird' is not 'interesting' or 'boring'",
        "": "is empty",
        "source,key,label\na,0,boring\n": "need the columns source,key,index,label",
    }
    for text, why in errors.items():
        path.write_text(text)
        with pytest.raises(UserError) as err:
            read_labels(path)
        assert why in str(err.value) and "\n" not in str(err.value), (text, str(err.value))


def test_absurd_checkpoint_is_refused_before_allocating(tmp_path):
    cfg = {"kind": "cnn", "in_channels": 2, "size": 32, "channels": [8, 16, 32], "hidden": 64, "n_classes": 4}
    checkpoint.save(tmp_path / "ok.pt", build(cfg), cfg, {})
    ck = torch.load(tmp_path / "ok.pt", weights_only=True)
    ck["model"]["n_classes"] = 10 ** 7  # 10^7 x 64 floats = 2.6 GB if built
    torch.save(ck, tmp_path / "absurd.pt")
    code = ("import sys\nfrom cnnpipe.checkpoint import load_model\n"
            "try:\n    load_model(sys.argv[1])\nexcept Exception as e:\n    print(e, file=sys.stderr)\n")
    rc, err, peak = run_measured([sys.executable, "-c", code, str(tmp_path / "absurd.pt")], 120)
    assert "asks for head.weight of shape (10000000, 64), the weights have it stored (4, 64)" in err, err
    assert peak < 1500, peak  # torch itself is ~400 MB; the model would add 2.6 GB


def test_refused_checkpoint_message_is_whole(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError) as err:
        checkpoint.load(tmp_path / "evil.pt")
    msg = str(err.value)
    assert msg.endswith("is blocked)") and "GLOBAL posix.system" in msg, msg


def test_csv_text_cells_cannot_be_formulas(tmp_path):
    from cnnpipe.tables import read_table as read_csv, write_csv

    df = pd.DataFrame({"source": ["=HYPERLINK(1).fits", "+1+1.fits", "-2.fits", "@x.fits", "'q.fits", "ok.fits"],
                       "key": ["0"] * 6, "score": [-1.5, 2.0, 0.0, 1.0, 3.0, 4.0]})
    write_csv(df, tmp_path / "a.csv")
    text = (tmp_path / "a.csv").read_text().splitlines()
    assert text[1].startswith("'=HYPERLINK") and text[2].startswith("'+1") and text[4].startswith("'@")
    assert text[1].endswith(",-1.5")  # numbers stay numbers
    back = read_csv(tmp_path / "a.csv")
    pd.testing.assert_frame_equal(back[["source", "key"]], df[["source", "key"]])
    assert restore(neutralise(df)).equals(df)


def test_population_of_one_is_scored_against_the_whole_run():
    n = 30
    df = pd.DataFrame({"source": [f"big/{i}.fits" for i in range(n)] + ["lonely/x.fits"], "key": "0",
                       "population": ["big"] * n + ["lonely"],
                       "recon": np.r_[np.random.default_rng(0).normal(1, 0.1, n), 5.0]})
    assert ensemble(df, {"recon": 1.0}, "robust_z", 2.0)[-1] == 0  # alone, it is its own median
    pooled, small = small_populations(df, 20)
    assert small == {"lonely": 1} and pooled.tolist() == [False] * n + [True]
    score = ensemble(df, {"recon": 1.0}, "robust_z", 2.0, pooled)
    assert score[-1] > 10 and score.argmax() == n


# ---------------------------------------------------------------- a real full disk (tmpfs)
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards (root only, as in CI)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.fail("the disk-full tests mount a tmpfs and need root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def _one_error(err: str, verb: str, path: Path) -> None:
    lines = [line for line in err.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert lines == [f"cnnpipe {verb}: error: No space left on device: {path}"], err[-3000:]


def test_disk_full_during_ingest(tmp_path, small_disk):
    corpus.good(tmp_path / "good")
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32)).writeto(
        tmp_path / "good" / "big.fits")  # ~2700 tiles: more than 1 MiB of shard
    (small_disk / "s.h5").write_bytes(b"previous result")
    (small_disk / "s.tmp-999999.h5").write_bytes(b"left by a killed job")
    rc, err, _ = run_measured([CNNPIPE, "ingest", "--settings", json.dumps({"inputs": [str(tmp_path / "good")],
                               "ingest": {"n_shards": 1}}), "--shard", "0", "--out", str(small_disk / "s.h5"),
                               "--manifest", str(small_disk / "m.csv")], 300)
    assert rc == 1, err[-3000:]
    _one_error(err, "ingest", small_disk / "s.h5")
    assert (small_disk / "s.h5").read_bytes() == b"previous result"
    assert sorted(p.name for p in small_disk.iterdir()) == ["s.h5"]  # no temp file, the stale one removed


def test_disk_full_during_training(tmp_path, small_disk):
    from cnnpipe.ingest import ingest_shard
    from cnnpipe.tables import write_csv
    from cnnpipe.preprocess import preprocess_shard

    corpus.good(tmp_path / "good")
    cfg = config.parse({"inputs": [str(tmp_path / "good")], "ingest": {"n_shards": 1}, "device": "cpu",
                        "train": {"vae": {"epochs": 1}}})
    write_csv(ingest_shard(cfg, 0, tmp_path / "frames.h5"), tmp_path / "manifest.csv")
    preprocess_shard(cfg, tmp_path / "frames.h5", tmp_path / "shard-0.h5", torch.device("cpu"))
    (small_disk / "vae.pt").write_bytes(b"previous model")
    rc, err, _ = run_measured([CNNPIPE, "train-vae", "--settings", json.dumps(cfg.raw), "--threads", "1",
                               "--features", str(tmp_path / "shard-0.h5"), "--manifest",
                               str(tmp_path / "manifest.csv"), "--out", str(small_disk / "vae.pt"),
                               "--metrics", str(small_disk / "vae.csv")], 300)
    assert rc == 1 and "inline_container" not in err, err[-3000:]
    _one_error(err, "train-vae", small_disk / "vae.ckpt.pt")
    assert (small_disk / "vae.pt").read_bytes() == b"previous model"
    assert not [p.name for p in small_disk.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- the whole workflow
@pytest.fixture
def workdir(tmp_path):
    yield tmp_path / "wd"
    hc.remove_deep(tmp_path / "wd" / "readable")


@pytest.mark.slow
def test_hostile_corpus_through_the_workflow(tmp_path, workdir):
    """``inputs: ["."]`` in a folder holding the hostile corpus, good files, a stale output shard and a labels
    file with repeated rows: the run finishes, every readable frame is ranked once, every hostile file is
    quarantined with its reason, nothing of the outside file or of results/ is read, no traceback."""
    from cnnpipe.tables import read_table as read_csv

    wd = workdir
    outside = hc.outside(tmp_path / "outside")
    cases = hc.hostile(wd / "hostile", outside)
    readable = hc.readable(wd / "readable")
    good = corpus.good(wd / "good")
    names = hc.formula(wd)
    planted = hc.own_output(wd)
    (wd / "config").mkdir()
    (wd / "config" / "labels.csv").write_text("source,key,index,label\n./readable/loop/ok.fits,0,0,boring\n"
                                              "./readable/loop/ok.fits,0,0,boring\n")
    cfg = {"inputs": [*names[:2], "."], "ingest": {"n_shards": 2}, "score": {"label_neighbours": 0},
           "train": {"cnn": {"epochs": 1}, "vae": {"epochs": 1}}, "report": {"top_k": 100}}
    t0 = time.time()
    proc = snakemake(wd, cfg, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"\nhostile workflow: {time.time() - t0:.0f} s")
    for log in (wd / "logs").rglob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log
    man = read_csv(wd / "results/manifest.csv")
    for name, why in cases.items():
        rows = man[man.source == f"./hostile/{name}"]
        assert (rows.status == "quarantined").all() and len(rows) == 1 and why in rows.reason.iloc[0], name
    assert not man.source.str.startswith("./results").any() and not man.source.str.contains("outside").any()
    ok = man[man.status == "ok"]
    ranked = read_csv(wd / "results/anomalies.csv")
    assert sorted(zip(ranked.source, ranked.key, ranked["index"])) == sorted(zip(ok.source, ok.key, ok["index"]))
    frames = read_csv(wd / "results/anomalies_by_frame.csv")
    expect = ({f"./readable/{n}": k for n, k in readable.items()} | {f"./good/{n}": len(v) for n, v in good.items()}
              | {n: 1 for n in names[:2]} | {f"./{n}": 1 for n in names[2:]})
    assert frames.source.value_counts().to_dict() == expect
    # formula-like names are written so that a spreadsheet shows them as text
    for csv in ("anomalies.csv", "anomalies_by_frame.csv", "latent_map.csv", "manifest.csv"):
        raw = (wd / "results" / csv).read_text()
        assert "\n'=HYPERLINK(1).fits," in raw and "\n'+1+1.fits," in raw and "\n=" not in raw, csv
    # the file alone in its folder (with a cosmic-ray hit) is scored against the whole run, and ranks among
    # the few tiles with a real defect (above it may be the two tiles of bigendian.fit, which hold NaN
    # and inf pixels, and scaled_int16.fts's cold pixels); the log and the report say so
    lonely = ranked[ranked.source == "./readable/lonely/one.fits"]
    assert lonely.pooled.iloc[0] and lonely.score.iloc[0] > 0 and lonely["rank"].iloc[0] <= 5, lonely
    assert "population ./readable/lonely has 1 frames" in (wd / "logs/rank.log").read_text()
    page = (wd / "results/report/index.html").read_text()
    assert 'id="pooled"' in page and "./readable/lonely" in page
    assert "repeated rows used once" in (wd / "logs/rank.log").read_text()
    # no byte of the outside file, or of the planted output shard, reached any output
    for p in [*(wd / "results").rglob("*"), *(wd / "logs").rglob("*")]:
        if p.is_file() and p != planted:
            assert hc.MARKER.encode() not in p.read_bytes(), p
    for tsv in (wd / "results/benchmarks").rglob("*.tsv"):
        assert pd.read_csv(tsv, sep="\t")["max_rss"].max() < RSS_LIMIT_MB, tsv
