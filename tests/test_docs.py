"""Documentation stays true to the code: config/README.md is the schema's, README names only real verbs,
make targets, files and outputs."""
from __future__ import annotations

import copy
import re
from pathlib import Path

from cnnpipe.cli import build_parser
from cnnpipe.config import load_schema
from cnnpipe.configdocs import schema_keys, schema_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIG_README = (ROOT / "config" / "README.md").read_text()
# JSON-schema keywords the config schema uses; anything else in a key's schema is a YAML slip, e.g. an
# unquoted comma in a flow mapping `{description: a, b}` that silently turns "b" into a key.
KEYWORDS = {"type", "default", "description", "minimum", "maximum", "exclusiveMinimum", "enum", "items",
            "minItems", "maxItems", "additionalProperties", "properties"}


def _verbs() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return set(sub.choices)


def _code(text: str) -> list[str]:
    """Text of fenced code blocks and inline code spans (where commands are written)."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`]+)`", rest)


def test_config_readme_is_what_the_generator_makes():
    assert CONFIG_README == schema_markdown(), "run: cnnpipe config-docs --out config/README.md"


def test_every_schema_key_is_documented_with_its_default():
    keys = list(schema_keys())
    assert len(keys) > 50 and ("train.vae.latent_dim" in dict(keys)) and ("ingest.normalise.method" in dict(keys))
    for path, sub in keys:
        assert sub.get("description"), f"{path} has no description in the schema"
        assert set(sub) <= KEYWORDS, f"{path}: unexpected schema entries {set(sub) - KEYWORDS}"
        row = next((line for line in CONFIG_README.splitlines() if line.startswith(f"| `{path}` |")
                    or line.startswith(f"| **`{path}`** |")), None)
        assert row is not None, f"{path} is not in config/README.md"
        if "properties" not in sub:
            assert "`" in row.split("|")[2], f"{path}: no default in its row"
    assert "| `device` | `auto` | one of `auto`, `cpu`, `cuda` |" in CONFIG_README
    assert "| `ingest.normalise.percentiles` | `[0.5, 99.5]` |" in CONFIG_README


def test_a_new_schema_key_changes_the_generated_docs():
    schema = copy.deepcopy(load_schema())
    schema["properties"]["report"]["properties"]["new_key"] = {"type": "integer", "default": 3,
                                                                "description": "A key added later."}
    text = schema_markdown(schema)
    assert "| `report.new_key` | `3` | integer | A key added later. |" in text
    assert text != CONFIG_README  # so the committed file would be caught as stale


def test_readme_names_only_real_verbs_and_all_of_them():
    command = r"(?:^|&&|;|\|)[ \t]*cnnpipe[ \t]+([a-z][a-z0-9-]*)"  # cnnpipe in command position
    named = {m for c in _code(README) for m in re.findall(command, c, re.M)}
    verbs = _verbs()
    assert named - verbs == set(), f"README names verbs the CLI lacks: {named - verbs}"
    assert verbs - named == set(), f"verbs missing from README: {verbs - named}"


def test_readme_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.M))
    named = {m for c in _code(README) for m in re.findall(r"\bmake\s+([a-z][\w-]*)", c)}
    assert {"demo", "test"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {named - targets}"


def test_readme_repository_paths_and_links_exist():
    made_by_user_or_run = {"config/labels.csv", "benchmarks/RESULTS.md"}
    paths = {p for c in _code(README) for p in re.findall(
        r"(?<![\w/.-])((?:workflow|config|tests|benchmarks|cnnpipe|docs)/[\w./-]*\w)", c)}
    paths |= set(re.findall(r"\]\(((?!http|#)[^)]+)\)", README))  # markdown links and images
    assert {"workflow/profiles/slurm/config.yaml", "docs/report.png", "config/README.md"} <= paths
    missing = sorted(p for p in paths - made_by_user_or_run if not (ROOT / p).exists())
    assert missing == [], f"README mentions paths that do not exist: {missing}"


def test_readme_output_files_are_workflow_outputs():
    rules = "\n".join(p.read_text() for p in [ROOT / "workflow" / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")])
    table = [line for line in README.splitlines() if line.startswith("| `")]
    outputs = {p for line in table for p in re.findall(r"`((?:results|logs)/[^`]*)`", line.split("|")[1])}
    assert {"results/anomalies.csv", "results/anomalies_by_frame.csv", "results/generate/*.png"} <= outputs
    for path in outputs:
        m = re.search(r"\{([\w,]+)\}", path)  # results/models/{cnn,vae}.pt: each alternative
        for variant in [path[:m.start()] + alt + path[m.end():] for alt in m.group(1).split(",")] if m else [path]:
            stem = re.split(r"[*<]", variant)[0]
            assert stem in rules, f"README lists {path} but no rule writes {stem!r}"
