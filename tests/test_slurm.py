"""The workflow through a real SLURM (tests/slurm/up.sh): the CPU profile on a node without GPUs gives the
same outputs as a local run; the GPU profile gets the training jobs a GPU on a node that has them.

Needs root and Debian's slurmctld/slurmd/slurm-client/munge. Without them the tests are skipped locally
(reason printed) but fail in CI (tests/conftest.py: in_ci), where .ci/run has installed them.
1. CPU: the node advertises no generic resources at all (like most clusters' default partition; a job
   asking for a GPU is refused there). Two copies of the workflow run on the same tiny demo config, one
   through workflow/profiles/slurm, one with `--cores 2`; then every job of the SLURM run has a SLURM job
   id in Snakemake's log, a SLURM log file, SLURM reports it COMPLETED without any gres; and the outputs
   agree: the ranking (anomalies.csv), the manifest, and the arrays of every frames/features shard.
2. GPU: the node is restarted advertising a GPU; the features are made locally, then the training, corner
   reference and scoring jobs run through workflow/profiles/slurm-gpu, and SLURM shows that the training
   and scoring jobs, and only they, were allocated a GPU.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import in_ci
import yaml
import yte

from cnnpipe.components import default_weights

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
UP, DOWN = REPO / "tests/slurm/up.sh", REPO / "tests/slurm/down.sh"
VENV_BIN = Path(sys.executable).parent
THREADS = 2  # both runs: --cores/--max-threads 2, so every rule uses the same thread count in both
TINY_CONFIG = {
    "device": "cpu",
    "demo": {"sky_frames": 16, "track_frames": 24},
    "ingest": {"n_shards": 2},
    "train": {"cnn": {"epochs": 1}, "vae": {"epochs": 1}},
    "score": {"weights": {**default_weights(), "cnn": 0.25}},  # a CNN weight > 0 ...
    "augment": {"rot90": False},  # ... and a task for it (quarter turns not a symmetry): train_cnn is a job too
}
# Flags only for this local cluster, which has no accounting: sacct knows no jobs there and the plugin
# would wait forever (ENVIRONMENT-NOTES); real clusters keep the profile's defaults.
TEST_ONLY_FLAGS = [
    "--slurm-status-command", "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",
]
RUN_TIMEOUT_S = 1200


def _why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start munged/slurmctld/slurmd (tests/slurm/up.sh)"
    missing = [t for t in ("sbatch", "squeue", "scontrol", "slurmctld", "slurmd", "munged", "mungekey")
               if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        return (f"SLURM/munge not installed ({', '.join(missing)} missing): "
                "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm not installed (pip install -e '.[test]')"
    return None


def _running_mode() -> str | None:
    """The mode ("cpu"/"gpu") of a cluster that tests/slurm/up.sh started and that answers, else None."""
    conf = Path("/etc/slurm/slurm.conf")
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    if sinfo.returncode != 0 or not sinfo.stdout.strip() or not conf.is_file():
        return None
    mode = re.search(r"^# written by cnnpipe tests/slurm/up.sh; mode (\w+)$", conf.read_text(), re.M)
    return mode.group(1) if mode else None


@pytest.fixture(scope="module")
def cluster():
    """``up(mode)`` starts the single-node cluster in mode "cpu" (no gres) or "gpu" (restarting it when the
    mode changes). Afterwards the cluster is stopped if it was not running before, else put back in the
    mode it was found in."""
    reason = _why_unavailable()
    if reason:
        if in_ci():
            pytest.fail(f"SLURM test must run in CI but cannot: {reason}")
        print(f"SKIP test_slurm: {reason}")
        pytest.skip(reason)
    before = _running_mode()

    def up(mode: str) -> None:
        out = subprocess.run(["bash", str(UP), mode, "120"], capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, f"tests/slurm/up.sh {mode} failed:\n{out.stdout}\n{out.stderr}"
        print(out.stdout.strip())

    yield up
    if before:
        up(before)
    else:
        subprocess.run(["bash", str(DOWN)], capture_output=True, timeout=60)


def _copy_workflow(dest: Path) -> Path:
    """A fresh copy of the workflow (Snakefile, rules, profiles, config) so runs never share results/."""
    dest.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    (dest / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    return dest


def _profile(workdir: Path, name: str) -> dict:
    """workflow/profiles/<name> as Snakemake reads it (YTE templates rendered, run from ``workdir``)."""
    here = os.getcwd()
    os.chdir(workdir)
    try:
        with open(f"workflow/profiles/{name}/config.yaml") as f:
            return yte.process_yaml(f, require_use_yte=True)
    finally:
        os.chdir(here)


def _test_profile(workdir: Path, name: str, cpus: int) -> Path:
    """workflow/profiles/<name>, with requests shrunk to fit this one small node (GPU requests kept)."""
    profile = _profile(workdir, name)

    def fit(resources: dict) -> dict:
        out = dict(resources)
        if "mem_mb" in out:
            out["mem_mb"] = 1000
        if isinstance(out.get("cpus_per_task"), int):
            out["cpus_per_task"] = min(out["cpus_per_task"], cpus)
        return out

    profile["default-resources"] = fit(profile.get("default-resources", {}))
    profile["set-resources"] = {rule: fit(res) for rule, res in profile.get("set-resources", {}).items()}
    profile["set-threads"] = {rule: min(n, cpus) for rule, n in profile.get("set-threads", {}).items()}
    profile["retries"] = 0  # a failure here is a bug to see at once, not to retry
    path = workdir.parent / f"test-profile-{name}"
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def _snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """Start snakemake in workdir under `timeout -k 10` (a hung SLURM executor ignores SIGTERM)."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = ["timeout", "-k", "10", str(RUN_TIMEOUT_S), str(VENV_BIN / "snakemake"),
           "--configfile", "tiny.yaml", "--max-threads", str(THREADS), *args]
    log = open(workdir / "run.log", "w")
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, workdir: Path, what: str) -> str:
    proc.wait()
    text = (workdir / "run.log").read_text()
    assert proc.returncode == 0, f"{what} run failed (rc {proc.returncode}); last lines:\n{text[-4000:]}"
    return text


def _slurm_jobs(log: str) -> dict[str, str]:
    """SLURM job id -> rule, from Snakemake's 'submitted with SLURM jobid N (log: .../rule_X/...)' lines."""
    pattern = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)")
    return {jid: re.search(r"/rule_([A-Za-z0-9_]+)/", path).group(1) for jid, path in pattern.findall(log)}


def _scontrol(*what: str) -> dict[str, str]:
    """``scontrol -d -o show <what>`` as a dict (-d adds what was allocated, e.g. JOB_GRES=gpu:1)."""
    out = subprocess.run(["scontrol", "-d", "-o", "show", *what], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def _gres(profile: dict) -> dict[str, str]:
    """Rule -> the gres it asks for, over the profile's set-resources and default-resources."""
    out = {rule: res["gres"] for rule, res in profile.get("set-resources", {}).items() if "gres" in res}
    if "gres" in profile.get("default-resources", {}):
        out["*"] = profile["default-resources"]["gres"]
    return out


def _shards(run: Path, kind: str) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted((run / "results" / kind).glob("shard-*.h5")):
        with h5py.File(path, "r") as f:
            out[path.name] = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
    return out


def test_cpu_profile_on_a_node_without_gpus_matches_local_run(cluster, tmp_path):
    cluster("cpu")
    node = _scontrol("node")
    assert node.get("Gres") == "(null)", f"the CPU test node must advertise no gres: {node}"
    refused = subprocess.run(["sbatch", "--gres=gpu:1", "--wrap", "true"], capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode != 0 and "Invalid generic resource" in refused.stderr  # a GPU request fails here
    assert _gres(_profile(REPO, "slurm")) == {}, "the default SLURM profile must not ask for a GPU"

    cpus = os.cpu_count() or 1
    on_slurm = _copy_workflow(tmp_path / "slurm")
    local = _copy_workflow(tmp_path / "local")
    profile = _test_profile(on_slurm, "slurm", cpus)

    # Both at once: the SLURM run mostly waits on the queue. Same config, same data, separate results/.
    slurm_proc = _snakemake(on_slurm, "--workflow-profile", str(profile), *TEST_ONLY_FLAGS)
    local_proc = _snakemake(local, "--workflow-profile", "workflow/profiles/default", "--cores", str(THREADS))
    local_log = _finish(local_proc, local, "local")
    slurm_log = _finish(slurm_proc, on_slurm, "SLURM")

    # --- the jobs really went through SLURM ---
    jobs = _slurm_jobs(slurm_log)
    done_steps = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", slurm_log)
    assert jobs, f"no SLURM job ids in Snakemake's log:\n{slurm_log[-3000:]}"
    assert sorted(jobs.values()) == sorted(r for r in done_steps if r != "all"), \
        "every job except the local target `all` must have been submitted to SLURM"
    assert {"ingest", "preprocess", "train_cnn", "train_vae"} <= set(jobs.values())
    assert "Finished jobid" in local_log and "SLURM jobid" not in local_log
    for jobid, rule in jobs.items():
        assert list((on_slurm / ".snakemake/slurm_logs" / f"rule_{rule}").rglob(f"{jobid}.log")), \
            f"no SLURM log for job {jobid} ({rule})"
        info = _scontrol("job", jobid)  # MinJobAge=3600 keeps finished jobs visible to slurmctld
        assert info["JobState"] == "COMPLETED", (jobid, rule, info.get("JobState"))
        assert info["WorkDir"] == str(on_slurm)
        assert "gpu" not in info.get("TresPerNode", "") and info.get("JOB_GRES") == "(null)", \
            f"{rule} job {jobid} asked for or got a GPU: {info}"

    # --- same outputs as the local run ---
    made_here = sorted(p.relative_to(local) for p in (local / "results").rglob("*")
                       if p.is_file() and "benchmarks" not in p.parts)
    made_there = sorted(p.relative_to(on_slurm) for p in (on_slurm / "results").rglob("*")
                        if p.is_file() and "benchmarks" not in p.parts)
    assert made_there == made_here

    ranking = Path("results/anomalies.csv")
    if (local / ranking).exists():
        cols = ["source", "key", "index", "rank"]
        a, b = pd.read_csv(on_slurm / ranking), pd.read_csv(local / ranking)
        assert len(a) == len(b) > 0
        pd.testing.assert_frame_equal(a[cols], b[cols])
        np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-6)

    manifest = Path("results/manifest.csv")
    a, b = pd.read_csv(on_slurm / manifest), pd.read_csv(local / manifest)
    assert len(a) >= TINY_CONFIG["demo"]["sky_frames"] + TINY_CONFIG["demo"]["track_frames"]
    pd.testing.assert_frame_equal(a, b)
    assert set(a["shard"]) == set(range(TINY_CONFIG["ingest"]["n_shards"]))

    for kind in ("frames", "features"):
        there, here = _shards(on_slurm, kind), _shards(local, kind)
        assert sorted(there) == [f"shard-{i}.h5" for i in range(TINY_CONFIG["ingest"]["n_shards"])]
        assert sorted(there) == sorted(here)
        for name in here:
            assert sorted(there[name]) == sorted(here[name])
            for col, arr in here[name].items():
                np.testing.assert_array_equal(there[name][col], arr, err_msg=f"{kind}/{name}:{col}")


def test_gpu_profile_gives_the_training_and_scoring_jobs_a_gpu(cluster, tmp_path):
    gpu_rules = _gres(_profile(REPO, "slurm-gpu"))
    assert gpu_rules == {"train_cnn": "gpu:1", "train_vae": "gpu:1", "score": "gpu:1"}
    work = _copy_workflow(tmp_path / "gpu")
    # The features locally while the cluster restarts with a GPU; then training, the corner reference and
    # scoring go to SLURM, and only the rules the profile names get a GPU.
    prep = _snakemake(work, "--workflow-profile", "workflow/profiles/default", "--cores", str(THREADS),
                      "--until", "preprocess", "manifest")
    cluster("gpu")
    node = _scontrol("node")
    assert node.get("Gres", "").startswith("gpu:1"), f"the GPU test node must advertise a GPU: {node}"
    _finish(prep, work, "local preparation")

    profile = _test_profile(work, "slurm-gpu", os.cpu_count() or 1)
    shards = TINY_CONFIG["ingest"]["n_shards"]
    log = _finish(_snakemake(work, "--workflow-profile", str(profile), *TEST_ONLY_FLAGS,
                             "results/models/cnn.pt", "results/models/vae.pt",
                             *[f"results/scores/shard-{i}.parquet" for i in range(shards)]), work, "SLURM GPU")
    jobs = _slurm_jobs(log)
    assert sorted(jobs.values()) == sorted(["corner_reference", "train_cnn", "train_vae"] + ["score"] * shards), \
        log[-3000:]
    for jobid, rule in jobs.items():
        info = _scontrol("job", jobid)
        assert info["JobState"] == "COMPLETED", (jobid, rule, info.get("JobState"))
        if rule in gpu_rules:
            assert "gres:gpu:1" in info.get("TresPerNode", ""), f"{rule} job {jobid} asked for no GPU: {info}"
            assert info.get("JOB_GRES") == "gpu:1", f"{rule} job {jobid} was allocated no GPU: {info}"
        else:
            assert info.get("JOB_GRES") == "(null)", f"{rule} job {jobid} got a GPU it does not use: {info}"
    assert (work / "results/models/vae.pt").stat().st_size > 0 and (work / "results/models/cnn.pt").exists()
