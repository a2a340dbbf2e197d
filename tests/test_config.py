"""Config validation: defaults filled from the schema, typos named with the nearest valid key."""
import pytest
import yaml

from cnnpipe import config


def test_defaults_fill_everything():
    cfg = config.parse({})
    assert cfg.ingest.tile_size == 64 and cfg.ingest.normalise.method == "asinh"
    assert cfg.feature_size == 32 and cfg.channels == 2


def test_shipped_config_is_valid_and_holds_the_defaults():
    """config/config.yaml sets what the schema defaults to, so a run with a config of its own (the
    benchmarks, the detection suite, a user's) measures what the shipped config runs."""
    cfg = config.load("config/config.yaml")
    assert cfg.inputs == ["results/demo/sky", "results/demo/tracks.h5"]
    assert cfg == config.parse({"inputs": cfg.inputs})


def test_typo_suggests_nearest_key():
    with pytest.raises(config.ConfigError, match="unknown key 'tile_sise' \\(did you mean 'tile_size'\\?\\)"):
        config.parse({"ingest": {"tile_sise": 32}})
    with pytest.raises(config.ConfigError, match="did you mean 'inputs'"):
        config.parse({"input": ["x.fits"]})


def test_wrong_type_names_the_key():
    with pytest.raises(config.ConfigError, match="ingest/n_shards"):
        config.parse({"ingest": {"n_shards": "four"}})
    with pytest.raises(config.ConfigError, match="normalise/method"):
        config.parse({"ingest": {"normalise": {"method": "log"}}})


def test_settings_json_overrides_file(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"seed": 3, "ingest": {"n_shards": 2}}))
    cfg = config.load(tmp_path / "c.yaml", '{"ingest": {"tile_size": 32}}')
    assert cfg.seed == 3 and cfg.ingest.n_shards == 2 and cfg.ingest.tile_size == 32
