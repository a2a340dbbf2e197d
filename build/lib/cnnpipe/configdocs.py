"""config/README.md, generated from the schema so the documentation cannot drift from the keys.

``cnnpipe config-docs --out config/README.md`` rewrites it; ``tests/test_docs.py`` fails when the committed
file differs from what :func:`schema_markdown` makes.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from .config import load_schema

INTRO = """\
# Configuration

`config/config.yaml` is the config the workflow reads; it is checked against
`workflow/schemas/config.schema.yaml` (which fills in every default below) before any job runs. A misspelt
key stops the run with the nearest valid key: `unknown key 'tile_sise' (did you mean 'tile_size'?)`.

**The three keys that matter** for your own data:

- `inputs`: the FITS/HDF5 files, folders (searched recursively) or globs to rank;
- `ingest.hdf5_dataset`: which HDF5 dataset holds the frames (`null` = the first 3-D/4-D one);
- `augment.*` (`hflip`, `vflip`, `rot90`, `translate`): the symmetries your data really has. Sky frames
  and detector events have no preferred orientation; for digits turn rotations and flips off (a rotated 6
  is a 9).

**Overriding without editing the file.** Top-level keys on the command line:
`snakemake --cores 8 --config device=cpu seed=1 'inputs=["/data/survey/"]'`. Nested keys go in a small
YAML file laid over `config/config.yaml` (Snakemake reads `--config` values inside a section as text, so
numbers there would fail the schema):

```bash
printf 'ingest:\\n  n_shards: 32\\ntrain:\\n  vae:\\n    latent_dim: 32\\n' > my.yaml
snakemake --cores 8 --configfile my.yaml
```

A single step run by hand takes the same keys as YAML (`--config`) and/or JSON merged over it
(`--settings`): `cnnpipe preprocess --config config/config.yaml --settings '{"device": "cpu"}' ...`.

This file is generated from the schema: after changing `cnnpipe/config.schema.yaml`, run
`cnnpipe config-docs --out config/README.md`.

## Every key

"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _value(v: Any) -> str:
    return f"`{json.dumps(v)}`" if not isinstance(v, str) else f"`{v}`"


def _allowed(s: dict) -> str:
    """Type and bounds of a key, e.g. ``integer >= 1`` or ``one of auto, cpu, cuda``."""
    if "enum" in s:
        return "one of " + ", ".join(f"`{e}`" for e in s["enum"])
    types = s.get("type", "")
    text = " or ".join(types) if isinstance(types, list) else types
    if text == "array" and "items" in s:
        text = f"list of {s['items'].get('type', 'value')}"
        if s.get("minItems") == s.get("maxItems") and "minItems" in s:
            text += f" ({s['minItems']} items)"
    if text == "object" and isinstance(s.get("additionalProperties"), dict):
        text = f"name -> {s['additionalProperties'].get('type', 'value')}"
    for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in s:
            text += f" {op} {s[key]}"
    return text


def schema_keys(schema: dict | None = None) -> Iterator[tuple[str, dict]]:
    """Every key of the schema as ``(dotted.path, sub-schema)``, sections before their keys, schema order."""
    def walk(node: dict, prefix: str) -> Iterator[tuple[str, dict]]:
        for name, sub in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            yield path, sub
            yield from walk(sub, path + ".")

    yield from walk(schema if schema is not None else load_schema(), "")


def schema_markdown(schema: dict | None = None) -> str:
    """The text of config/README.md: the intro, then one table row per key (dotted path, default, meaning)."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for path, sub in schema_keys(schema):
        section = "properties" in sub
        key = f"**`{path}`**" if section else f"`{path}`"
        default = "" if section else _value(sub.get("default"))
        meaning = sub.get("description", "section" if section else "")
        rows.append(f"| {key} | {default} | {'section' if section else _cell(_allowed(sub))} | {_cell(meaning)} |")
    return INTRO + "\n".join(rows) + "\n"
