"""Input tracking of the workflow (workflow/rules/common.smk).

Input files are tracked by a digest param of ingest instead of one DAG edge per file and shard (see
benchmarks/dag.py); these tests check Snakemake still reruns ingest exactly when an input changes.
"""
import os
import re
import shutil

import pytest

import corpus
from workflow_run import snakemake

pytestmark = pytest.mark.slow

TARGET = "results/manifest.csv"


def planned(workdir, cfg) -> str:
    proc = snakemake(workdir, cfg, "-n", TARGET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_ingest_reruns_when_an_input_is_changed_or_added(tmp_path):
    corpus.good(tmp_path / "in")
    cfg = {"inputs": ["in"], "ingest": {"n_shards": 2}}
    first = snakemake(tmp_path, cfg, TARGET)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Nothing to be done" in planned(tmp_path, cfg)

    name = sorted(os.listdir(tmp_path / "in"))[0]
    st = os.stat(tmp_path / "in" / name)
    os.utime(tmp_path / "in" / name, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    out = planned(tmp_path, cfg)
    assert re.search(r"^ingest\s+2$", out, re.M), out[-2000:]

    assert snakemake(tmp_path, cfg, TARGET).returncode == 0
    assert "Nothing to be done" in planned(tmp_path, cfg)
    shutil.copy(tmp_path / "in" / name, tmp_path / "in" / f"copy-{name}")
    out = planned(tmp_path, cfg)
    assert re.search(r"^ingest\s+2$", out, re.M), out[-2000:]  # both shards: files are dealt in order


def test_plain_snakemake_from_the_repository_applies_the_default_profile(tmp_path):
    """`snakemake` run from the repository root (no --profile, no --snakefile, no target) finds the root
    Snakefile, plans the whole workflow (its default target: the report) and, through ./profiles, applies
    workflow/profiles/default: its printshellcmds shows every job's command in a dry run."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from workflow_run import REPO, TINY

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(TINY))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--directory", str(tmp_path), "-n"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Using workflow specific profile profiles/default" in out, out[-3000:]
    assert "cnnpipe ingest --settings" in out and "cnnpipe report --settings" in out  # printshellcmds: true
    plain = subprocess.run([sys.executable, "-m", "snakemake", "--directory", str(tmp_path), "-n", TARGET,
                            "--workflow-profile", "none"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert plain.returncode == 0 and "cnnpipe ingest --settings" not in plain.stdout + plain.stderr


def test_the_cnn_is_trained_only_when_its_component_counts(tmp_path):
    """Every component read from the CNN at weight 0 (score.weights.cnn and cnn_knn), or data declared
    isotropic (every orientation allowed: nothing for the self-supervised CNN to predict; the default
    config at the CNN's default weights): no train_cnn job, the score jobs get no --cnn, the report no CNN
    metrics; one of them above 0 with an orientation left: the CNN is trained and every score job reads it."""
    from workflow_run import TINY

    from cnnpipe.components import default_weights

    isotropic = {"hflip": True, "vflip": True, "rot90": True}
    for off in ({**TINY, "score": {"weights": {**default_weights(), "cnn": 0.0, "cnn_knn": 0.0}}},
                {**TINY, "score": {"weights": default_weights()}, "augment": isotropic}):
        plan = planned_all(tmp_path, off)
        assert not re.search(r"^train_cnn\s", plan, re.M) and "--cnn" not in plan and "--cnn-metrics" not in plan
        assert re.search(r"^train_vae\s+1$", plan, re.M) and re.search(r"^score\s+2$", plan, re.M)
    assert default_weights()["cnn"] > 0
    for on in (TINY, {**TINY, "score": {"weights": {**default_weights(), "cnn": 0.0}}}):  # cnn_knn alone
        plan = planned_all(tmp_path, on)
        assert re.search(r"^train_cnn\s+1$", plan, re.M)
        assert plan.count("--cnn results/models/cnn.pt") == 2
        assert "--cnn-metrics results/models/cnn_metrics.csv" in plan


def planned_all(workdir, cfg) -> str:
    """The dry run of the whole workflow, shell commands printed."""
    proc = snakemake(workdir, cfg, "-n", "-p")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr

