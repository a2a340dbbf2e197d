"""Faults survived: malformed and hostile inputs through the whole workflow, a killed run resumed, an
unwritable output path. (Kill-and-resume of training with identical weights: tests/test_train.py.)

Unreadable files: as root, mode 000 does not stop reads, so ``corpus.bad`` then uses a broken symlink
named like a FITS file (found by the folder walk, cannot be opened) instead of a chmod-000 file.
"""
import os
import re
import resource
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from markupsafe import escape

import corpus
from workflow_run import REPO, TINY, snakemake
from cnnpipe.readers import Problem, Unit, read_unit

#: the tiny demo plus the good, bad and odd corpora; one epoch per model; every frame in the gallery
CFG = {**TINY, "inputs": [*TINY["inputs"], "good", "odd"], "train": {"cnn": {"epochs": 1}, "vae": {"epochs": 1}},
       "report": {"top_k": 100}}


def _inputs(wd):
    return corpus.bad(wd / "bad"), corpus.good(wd / "good"), corpus.odd(wd / "odd")


@pytest.mark.parametrize("name", ["bad_bitpix.fits", "corrupt_tile.fits.fz", "no_access.fits"])
def test_new_bad_cases_are_problems_not_crashes(tmp_path, name):
    reason = corpus.bad(tmp_path)[name]
    recs = list(read_unit(Unit(str(tmp_path / name), "fits")))
    assert len(recs) == 1 and isinstance(recs[0], Problem), recs
    assert reason.lower() in recs[0].reason.lower() and "\n" not in recs[0].reason


def test_odd_files_are_read(tmp_path):
    for name, obj in corpus.odd(tmp_path).items():
        recs = list(read_unit(Unit(os.path.join(tmp_path, name), "fits")))
        assert [r.images.shape for r in recs] == [(1, 64, 64)]
        assert recs[0].header.get("OBJECT", "") == obj


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("rel")
    bad, good, odd = _inputs(wd)
    proc = snakemake(wd, CFG)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd, bad, good, odd


@pytest.mark.slow
def test_malformed_corpus_through_whole_workflow(full_run):
    wd, bad, good, odd = full_run
    man = pd.read_csv(wd / "results/manifest.csv", dtype={"key": str}, keep_default_na=False)
    q = man[man.status == "quarantined"]
    page = (wd / "results/report/index.html").read_text(encoding="utf-8")
    table = re.search(r'<table id="quarantined">(.*?)</table>', page, re.S).group(1)
    for name, why in bad.items():  # every bad file quarantined, with its reason, in the manifest and the page
        rows = q[q.source == f"bad/{name}"]
        assert len(rows) >= 1, name
        reason = rows.reason.iloc[0]
        assert why.lower() in reason.lower(), (name, reason)
        assert f"bad/{name}" in table and str(escape(reason)) in table, name
    ok = man[man.status == "ok"]
    assert not ok.source.str.startswith("bad/").any()
    # every good frame ranked, exactly once; the non-UTF-8 name is shown printable
    ranked = pd.read_csv(wd / "results/anomalies.csv", dtype={"key": str})
    assert sorted(zip(ranked.source, ranked.key, ranked["index"])) == sorted(zip(ok.source, ok.key, ok["index"]))
    frames = pd.read_csv(wd / "results/anomalies_by_frame.csv", dtype={"key": str})
    for name, expected in good.items():
        assert (frames.source == f"good/{name}").sum() == len(expected), name
    printable = "odd/" + os.fsencode(next(n for n in odd if n.startswith("latin1"))).decode("utf-8", "backslashreplace")
    assert printable == "odd/latin1_\\xe9t\\xe9.fits" and (frames.source == printable).sum() == 1
    assert (frames.source == "odd/html_header.fits").sum() == 1
    # header text is escaped in the page, never live markup
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for log in (wd / "logs").rglob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log


@pytest.mark.slow
def test_killed_run_resumes_to_same_result(full_run, tmp_path):
    """SIGINT (Ctrl-C) to the whole Snakemake process group while training runs, then --rerun-incomplete.

    SIGINT is reset to its default in the child: a shell starts background jobs with SIGINT ignored, and
    Python then keeps ignoring it, which would make this test depend on how pytest was started.
    """
    ref = full_run[0]
    _inputs(tmp_path)
    (tmp_path / "config.yaml").write_text(__import__("yaml").safe_dump(CFG))
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    training = [tmp_path / "logs/train_cnn.log", tmp_path / "logs/train_vae.log"]  # a job's log appears as it starts
    while not any(p.exists() for p in training) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before training started"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    assert not (tmp_path / "results/anomalies.csv").exists()
    assert (tmp_path / "results/features/shard-1.h5").exists()  # work before training was kept

    again = snakemake(tmp_path, CFG, "--rerun-incomplete")
    assert again.returncode == 0, again.stderr[-4000:]
    assert not list(tmp_path.joinpath("results").rglob("*.tmp-*")), "temporary files left behind"
    a = pd.read_csv(tmp_path / "results/anomalies.csv", dtype={"key": str})
    b = pd.read_csv(ref / "results/anomalies.csv", dtype={"key": str})
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)


def test_unwritable_output_is_one_clear_line(tmp_path):
    corpus.good(tmp_path / "good")
    blocker = tmp_path / "existing_file"
    blocker.write_text("a file where the output folder should be")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "cnnpipe"), "ingest", "--settings",
                          f'{{"inputs": ["{tmp_path / "good"}"], "ingest": {{"n_shards": 1}}}}', "--shard", "0",
                          "--out", str(blocker / "x.h5"), "--manifest", str(blocker / "m.csv")],
                         capture_output=True, text=True)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    err = [line for line in lines if "error" in line]
    assert err == [f"cnnpipe ingest: error: Not a directory: {blocker}"], out.stderr
    assert "Traceback" not in out.stderr
    assert not blocker.with_suffix("").joinpath("x.h5").exists()


def test_disk_full_mid_write_is_one_line_and_keeps_the_previous_output(tmp_path):
    """A real write failure part-way through a shard: the process may write at most 64 KiB
    (RLIMIT_FSIZE, so the kernel refuses the rest, EFBIG; a full disk takes the same path with ENOSPC).
    One line names the reason and the temporary file; the previous output stays whole; nothing is left."""
    corpus.good(tmp_path / "good")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.h5").write_bytes(b"previous result")

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # refuse the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    settings = f'{{"inputs": ["{tmp_path / "good"}"], "ingest": {{"n_shards": 1}}}}'
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "cnnpipe"), "ingest", "--settings",
                           settings, "--shard", "0", "--out", str(out / "x.h5"), "--manifest", str(out / "m.csv")],
                          capture_output=True, text=True, preexec_fn=small_disk)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cnnpipe ingest: error:")]
    assert len(errors) == 1 and "too large" in errors[0].lower() and "x.tmp-" in errors[0], proc.stderr[-2000:]
    assert (out / "x.h5").read_bytes() == b"previous result"
    assert sorted(p.name for p in out.iterdir()) == ["x.h5"]
