import json
import os

from cnnpipe.readers import resolve_inputs

SHARDS = list(range(config["ingest"]["n_shards"]))
DEMO_DIR = "results/demo"


def settings(*keys):
    """The config sections a step needs, as one JSON string (so a rule reruns only when they change)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def uses_demo():
    return any(os.path.normpath(p).startswith(DEMO_DIR) for p in config["inputs"])


def input_files(wildcards):
    """Inputs Snakemake should track: the demo's truth file (so the demo is made first) and existing files."""
    files = [f"{DEMO_DIR}/truth.csv"] if uses_demo() else []
    return files + [p for p, problem in resolve_inputs(config["inputs"]) if not problem
                    and not os.path.normpath(p).startswith(DEMO_DIR)]
