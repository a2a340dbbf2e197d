"""The CLI a new user meets: help with an example for every verb, --version, one-line errors that say what
to do (no traceback), progress output, and the end-of-run summary."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnpipe import __version__, checkpoint
from cnnpipe.cli import build_parser, main
from cnnpipe.config import load
from cnnpipe.models import build
from cnnpipe.progress import progress
from cnnpipe.summary import quarantine_text, run_summary, top_anomalies_text


def _verbs() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return sorted(sub.choices)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``cnnpipe`` entry point (a fresh process: what a user sees on the terminal)."""
    code = "import sys; from cnnpipe.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ---------------------------------------------------------------- help and version

@pytest.mark.parametrize("verb", _verbs())
def test_every_verb_has_help_with_an_example(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    example = out.split("example:", 1)[1].strip()
    assert example.startswith(f"cnnpipe {verb}")
    # the example parses: every option it uses exists (parse_args exits 2 on an unknown option)
    args = build_parser().parse_args(example.split()[1:])
    assert args.verb == verb


def test_verb_list_and_version(capsys):
    assert {"ingest", "manifest", "preprocess", "train-cnn", "train-vae", "score", "rank", "report",
            "config-docs"} <= set(_verbs())
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and all(v in out for v in _verbs()) and "VERB --help" in out
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"cnnpipe {__version__}"


# ---------------------------------------------------------------- one-line errors

def test_config_typo_suggests_the_nearest_key(tmp_path):
    proc = _cli("ingest", "--settings", '{"ingest": {"tile_sise": 3}}', "--shard", "0",
                "--out", str(tmp_path / "s.h5"), "--manifest", str(tmp_path / "m.csv"))
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert "unknown key 'tile_sise' (did you mean 'tile_size'?)" in line
    assert not (tmp_path / "s.h5").exists()


def test_forced_cuda_without_a_gpu(tmp_path):
    proc = _cli("preprocess", "--settings", '{"device": "cuda"}', "--frames", str(tmp_path / "f.h5"),
                "--out", str(tmp_path / "x.h5"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert line.startswith("cnnpipe preprocess: error: device: cuda was requested but no CUDA GPU")
    assert "set device: auto or cpu" in line


def test_invalid_settings_json_is_one_line(capsys):
    assert main(["ingest", "--settings", '{"ingest": ', "--shard", "0", "--out", "x", "--manifest", "y"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "--settings is not valid JSON" in line


def test_bad_yaml_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "config.yaml"
    bad.write_text("ingest:\n  tile_size: [64\n")
    assert main(["ingest", "--config", str(bad), "--shard", "0", "--out", "x", "--manifest", "y"]) == 2
    assert f"{bad} is not valid YAML" in _one_line_error(capsys.readouterr().err)


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    """A bug is not a user mistake: main lets it propagate, so Python prints the full traceback to stderr,
    which the rule's ``2> {log}`` keeps in logs/<rule>/..."""
    import cnnpipe.configdocs

    def broken() -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cnnpipe.configdocs, "schema_markdown", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["config-docs"])


def _fits(path) -> None:
    from astropy.io import fits

    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32)).writeto(path)


def test_missing_input_is_quarantined_and_named_by_manifest(tmp_path, caplog, capsys):
    missing = str(tmp_path / "night-1" / "nope.fits")
    good = tmp_path / "good.fits"
    _fits(good)
    s = json.dumps({"inputs": [missing, str(good)], "ingest": {"n_shards": 1, "tile_size": 16, "tile_overlap": 4}})
    part = tmp_path / "m-0.csv"
    with caplog.at_level(logging.INFO):
        assert main(["ingest", "--settings", s, "--shard", "0", "--out", str(tmp_path / "s.h5"),
                     "--manifest", str(part)]) == 0
        assert main(["manifest", str(part), "--out", str(tmp_path / "manifest.csv")]) == 0
    rows = (tmp_path / "manifest.csv").read_text().splitlines()
    assert any(r.startswith(f"{missing},") and "quarantined,path does not exist" in r for r in rows)
    assert f"quarantined: {missing}: path does not exist" in caplog.text
    summary = quarantine_text(tmp_path / "manifest.csv")
    assert summary.startswith(f"1 input(s) quarantined ({missing}: path does not exist)")


def test_all_bad_inputs_stop_manifest_with_one_line(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    s = json.dumps({"inputs": [missing], "ingest": {"n_shards": 1}})
    part = tmp_path / "m-0.csv"
    assert main(["ingest", "--settings", s, "--shard", "0", "--out", str(tmp_path / "s.h5"),
                 "--manifest", str(part)]) == 0
    capsys.readouterr()
    assert main(["manifest", str(part), "--out", str(tmp_path / "manifest.csv")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"no usable frames in any input (1 quarantined): {missing}: path does not exist" in line
    assert "Check the 'inputs' entries" in line
    assert not (tmp_path / "manifest.csv").exists()


def test_score_refuses_a_checkpoint_from_another_config(tmp_path, capsys):
    small = {"ingest": {"tile_size": 16, "tile_overlap": 4}, "train": {"vae": {"channels": [4], "latent_dim": 4}}}
    mcfg = checkpoint.expected_config(load(settings=json.dumps(small)), "vae")
    vae = tmp_path / "vae.pt"
    checkpoint.save(vae, build(mcfg), mcfg, meta={})
    small["train"]["vae"]["latent_dim"] = 8
    assert main(["score", "--settings", json.dumps(small), "--shard", "0", "--features", "f.h5", "--frames", "g.h5",
                 "--reference", "r.h5", "--manifest", "m.csv", "--vae", str(vae), "--cnn", str(vae),
                 "--out", str(tmp_path / "s.pq")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "different model config (latent_dim: checkpoint 4 vs config 8)" in line
    assert "retrain or restore the matching config" in line
    small["train"]["vae"]["latent_dim"] = 4  # the matching config gets past the VAE to the next check
    small["score"] = {"weights": {"recon": 1.0, "cnn": 1.0}}  # the CNN is read only when its component counts
    small["augment"] = {"rot90": False}  # ... and it has a task (an orientation the data is not invariant under)
    assert main(["score", "--settings", json.dumps(small), "--shard", "0", "--features", "f.h5", "--frames", "g.h5",
                 "--reference", "r.h5", "--manifest", "m.csv", "--vae", str(vae), "--cnn", str(vae),
                 "--out", str(tmp_path / "s.pq")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"{vae} was trained with a different model config (kind: checkpoint 'vae' vs config 'cnn'" in line


# ---------------------------------------------------------------- progress and the end of a run

def test_progress_logs_tenths_when_not_a_terminal(caplog):
    log = logging.getLogger("test-progress")
    with caplog.at_level(logging.INFO, logger="test-progress"):
        assert list(progress(iter(range(20)), 20, "ingest shard 0", log, unit="units", tty=False)) == list(range(20))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "ingest shard 0: 2/20 units (10%)" and lines[-1] == "ingest shard 0: 20/20 units (100%)"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test-progress"):
        assert list(progress([1, 2, 3], 3, "x", log, tty=False)) == [1, 2, 3]
    assert [r.getMessage() for r in caplog.records] == ["x: 1/3 it (33%)", "x: 2/3 it (67%)", "x: 3/3 it (100%)"]


def test_progress_bar_on_a_terminal(caplog, capsys):
    log = logging.getLogger("test-progress")
    with caplog.at_level(logging.INFO, logger="test-progress"):
        assert list(progress(range(5), 5, "preprocess", log, unit="batches", tty=True)) == list(range(5))
    assert caplog.records == []
    assert "preprocess" in capsys.readouterr().err  # tqdm draws on stderr


def test_top_anomalies_text(tmp_path):
    csv = tmp_path / "anomalies.csv"
    lines = ["source,key,index,score,rank,recon"]
    lines += [f"data/f{r}.fits,0,{r * 2},{10.0 / r:.6f},{r},0.1" for r in range(1, 8)]
    csv.write_text("\n".join(lines) + "\n")
    text = top_anomalies_text(csv).splitlines()
    assert text[0] == f"top 5 anomalies ({csv}):"
    assert text[2:] == [f"{r:>5}  {10.0 / r:9.3f}  data/f{r}.fits [0] {r * 2}" for r in range(1, 6)]
    assert len(top_anomalies_text(csv, n=2).splitlines()) == 4
    assert top_anomalies_text(tmp_path / "absent.csv") == ""
    summary = run_summary(tmp_path / "report" / "index.html", csv, tmp_path / "absent-manifest.csv")
    assert summary.splitlines()[0] == f"cnnpipe: report {tmp_path / 'report' / 'index.html'}"
    assert "    1     10.000  data/f1.fits [0] 2" in summary and "quarantined" not in summary
