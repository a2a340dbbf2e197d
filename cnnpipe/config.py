"""Configuration: validate a dict against the schema (filling defaults) and parse it into typed sections.

The schema (``cnnpipe/config.schema.yaml``, linked as ``workflow/schemas/config.schema.yaml``) is the one
source of keys, types and defaults; the dataclasses here only give them names and types for the code. The
defaults and the description of ``score.weights`` come from the component table (:mod:`cnnpipe.components`),
filled into the schema when it is loaded, so a new component is one row there.
"""
from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import components
from .config_checks import problems
from .errors import UserError
from .limits import Limits

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(UserError, ValueError):
    """A config that does not match the schema; the message says which key and what to do."""


def load_schema() -> dict:
    """The schema, with one ``score.weights`` key per component (its default weight and description) from the
    component table: validating fills every weight not given, and refuses a name that is not a component."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    weights = schema["properties"]["score"]["properties"]["weights"]
    weights["properties"] = {c.name: {"type": "number", "minimum": 0, "default": c.weight,
                                      "description": c.description[0].upper() + c.description[1:] + "."}
                             for c in components.REGISTRY}
    return schema


def _fill_defaults(validator_class):
    """Extend a jsonschema validator so that validating also fills in ``default`` values."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def _schema_at(schema: dict, path: list) -> dict:
    for part in path:
        schema = schema.get("properties", {}).get(part, {})
    return schema


def _explain(error: jsonschema.ValidationError, schema: dict) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        known = sorted(_schema_at(schema, list(error.absolute_path)).get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        prefix = "" if where == "(top level)" else f"in '{where}': "
        return f"config error: {prefix}{'; '.join(hints)}; valid keys: {', '.join(known)}"
    return f"config error at '{where}': {error.message}"


def validate(raw: dict | None) -> dict:
    """Return a validated copy of ``raw`` with every default filled in; raise ConfigError on the first problem."""
    data = copy.deepcopy(raw or {})
    schema = load_schema()
    errors = sorted(_Validator(schema).iter_errors(data), key=lambda e: len(e.absolute_path))
    if errors:
        raise ConfigError(_explain(errors[0], schema))
    if found := problems(data):
        raise ConfigError(found[0])
    return data


@dataclass(frozen=True)
class Normalise:
    method: str
    percentiles: list[float]
    asinh_softening: float


@dataclass(frozen=True)
class Ingest:
    n_shards: int
    tile_size: int
    tile_overlap: int
    small_frames: str
    hdf5_dataset: str | None
    hdf5_labels: str | None
    chunk_frames: int
    limits: Limits
    pixel_outliers: bool
    sharpness_relative: float
    normalise: Normalise


@dataclass(frozen=True)
class Preprocess:
    pool_levels: int
    direction: bool
    batch_size: int


@dataclass(frozen=True)
class Augment:
    hflip: bool
    vflip: bool
    rot90: bool
    translate: int


@dataclass(frozen=True)
class CNN:
    epochs: int
    max_steps: int
    channels: list[int]
    hidden: int
    labels_csv: str | None


@dataclass(frozen=True)
class VAE:
    epochs: int
    max_steps: int
    channels: list[int]
    latent_dim: int
    beta: float
    kl_warmup_epochs: float
    upsample: str
    encoder_slope: float


@dataclass(frozen=True)
class Train:
    batch_size: int
    val_fraction: float
    shuffle_buffer: int
    val_rows: int
    lr: float
    weight_decay: float
    patience: int
    keep_checkpoint: bool
    amp: bool
    cnn: CNN
    vae: VAE


@dataclass(frozen=True)
class Score:
    k: int
    knn_sample: int
    latent_active: float
    weights: dict[str, float]
    ensemble: str
    power: float
    tail_top: int
    tail_quantile: float
    consensus: float
    consensus_fraction: float
    consensus_min: int
    consensus_exempt: float
    corner_sigma: float
    orientation_sigma: float
    orientation_derivative_sigma: float
    patch_size: int
    patch_stride: int
    patch_bank: int
    patch_pool: int
    line_angles: int
    line_clip: float
    line_background: int
    line_local: int
    layout_side: int
    layout_alignment: float
    occupancy_sigma: float
    diffuse_sigmas: list[float]
    diffuse_clip: float
    diffuse_grow: float
    diffuse_threshold: float
    top_fraction: float
    batch_size: int
    min_population: int
    labels: str
    label_neighbours: int


@dataclass(frozen=True)
class Report:
    top_k: int
    table_rows: int
    region_boxes: int
    frame_maps: int
    frame_pixels: int


@dataclass(frozen=True)
class Demo:
    sky_frames: int
    track_frames: int
    anomaly_fraction: float
    size: int


@dataclass(frozen=True)
class Config:
    inputs: list[str]
    seed: int
    device: str
    demo: Demo
    ingest: Ingest
    preprocess: Preprocess
    augment: Augment
    train: Train
    score: Score
    report: Report
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def channels(self) -> int:
        """Number of feature channels the models see: intensity, Sobel magnitude (+ direction)."""
        return 3 if self.preprocess.direction else 2

    @property
    def feature_size(self) -> int:
        """Side of a feature map: the tile size halved once per pooling level."""
        return self.ingest.tile_size >> self.preprocess.pool_levels


def parse(raw: dict | None) -> Config:
    """Validate ``raw`` and build the typed Config."""
    d = validate(raw)
    ing = dict(d["ingest"], normalise=Normalise(**d["ingest"]["normalise"]), limits=Limits(**d["ingest"]["limits"]))
    tr = dict(d["train"], cnn=CNN(**d["train"]["cnn"]), vae=VAE(**d["train"]["vae"]))
    return Config(
        inputs=d["inputs"], seed=d["seed"], device=d["device"], demo=Demo(**d["demo"]),
        ingest=Ingest(**ing), preprocess=Preprocess(**d["preprocess"]), augment=Augment(**d["augment"]),
        train=Train(**tr), score=Score(**d["score"]), report=Report(**d["report"]), raw=d,
    )


def load(path: str | Path | None = None, settings: str | None = None) -> Config:
    """Config from a YAML file and/or a JSON string (the form the Snakemake rules pass); JSON wins."""
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys, not {type(raw).__name__}")
    if settings:
        try:
            extra = json.loads(settings)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--settings is not valid JSON ({exc}); e.g. --settings '{{\"device\": \"cpu\"}}'") from None
        if not isinstance(extra, dict):
            raise ConfigError("--settings must be a JSON object, e.g. --settings '{\"device\": \"cpu\"}'")
        _merge(raw, extra)
    return parse(raw)


def _merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
