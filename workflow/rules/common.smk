import hashlib
import json
import os

from cnnpipe.augment import cnn_has_task
from cnnpipe.components import models_needed
from cnnpipe.readers import resolve_inputs

SHARDS = list(range(config["ingest"]["n_shards"]))
LABELS = config["score"]["labels"]  # human labels: read by rank and shown (and kept) by the report
# The CNN is trained (and scored) only when a score component computed from it has a weight above 0
# (score.weights.cnn) and it has a task: labels (train.cnn.labels_csv) or an orientation the data is not
# invariant under (augment.rot90 off). Otherwise its rule is not part of the run.
TRAIN_CNN = "cnn" in models_needed(config["score"]["weights"],
                                   cnn_has_task(config["augment"], config["train"]["cnn"]["labels_csv"]))
DEMO_DIR = "results/demo"
# folders this workflow writes: never read as inputs (`inputs: ["."]` must not re-ingest the shards),
# except the demo data it makes for itself
OWN_OUTPUTS = ["results", "logs", ".snakemake"]


def settings(*keys):
    """The config sections a step needs, as one JSON string (so a rule reruns only when they change)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def in_demo(path):
    return os.path.normpath(path).startswith(DEMO_DIR)


def uses_demo():
    return any(in_demo(p) for p in config["inputs"])


def input_files(wildcards):
    """Files Snakemake must make before ingest: the demo's truth file when the demo is used.

    The user's inputs are deliberately not listed: as inputs of every ingest job they cost one DAG edge per
    file and shard (10k files x 16 shards took ~25 s to plan). `inputs_digest` tracks them instead.
    """
    return [f"{DEMO_DIR}/truth.csv"] if uses_demo() else []


_DIGEST = {}


def inputs_digest(wildcards):
    """Hash of every resolved input's path, size and mtime (an ingest param, computed once per run).

    Any input added, removed or changed reruns ingest: all shards, since files are dealt to shards in order.
    """
    if not _DIGEST:
        h = hashlib.sha256()
        # the demo's files are made by this workflow (tracked through its truth.csv), so leave them out:
        # they do not exist yet when the first run plans its jobs
        for path, problem in resolve_inputs([p for p in config["inputs"] if not in_demo(p)], OWN_OUTPUTS, [DEMO_DIR]):
            st = os.stat(path) if not problem and os.path.exists(path) else None
            line = f"{path}\0{problem}\0{st and st.st_size}\0{st and st.st_mtime_ns}\n"
            h.update(line.encode("utf-8", "surrogateescape"))  # non-UTF-8 file names
        _DIGEST["inputs"] = h.hexdigest()
    return _DIGEST["inputs"]


def train_settings(model):
    """Config a training rule depends on: seed, device, symmetries, feature shape, and its own model's
    train section (so retuning the VAE does not retrain the CNN)."""
    other = "vae" if model == "cnn" else "cnn"
    train = {k: v for k, v in config["train"].items() if k != other}
    keep = {k: config[k] for k in ("seed", "device", "augment", "ingest", "preprocess")}
    return json.dumps({**keep, "train": train}, sort_keys=True)
