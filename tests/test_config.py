import pytest

from llmrec.config import CandidatesConfig, Config, dump_toml, load_config
from llmrec.errors import ConfigError


def test_defaults_match_shipped_config():
    assert load_config("scripts/configs/ml100k.toml") == Config()


def test_overrides_are_typed(tmp_path):
    cfg = load_config(None, ["candidates.seed=7", "data.min_rating=4", "candidates.kinds=['sampled']",
                             "out_dir=/tmp/x", "data.item_noun=book"])
    assert cfg.candidates.seed == 7
    assert cfg.data.min_rating == 4.0 and isinstance(cfg.data.min_rating, float)
    assert cfg.candidates.kinds == ("sampled",)
    assert cfg.out_dir == "/tmp/x"
    assert cfg.data.item_noun == "book"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'candidates.sed'"):
        load_config(None, ["candidates.sed=1"])
    p = tmp_path / "c.toml"
    p.write_text("[data]\ndatset = 'x'\n")
    with pytest.raises(ConfigError, match="'data.datset'"):
        load_config(p)


def test_wrong_types_and_values():
    with pytest.raises(ConfigError, match="candidates.seed: expected int; got 'abc'"):
        load_config(None, ["candidates.seed=abc"])
    with pytest.raises(ConfigError, match="unknown kind 'random'"):
        load_config(None, ["candidates.kinds=['random']"])
    with pytest.raises(ConfigError, match="candidates.n: must be >= 2"):
        CandidatesConfig(n=1)
    with pytest.raises(ConfigError, match="data.path and data.items_path are required"):
        load_config(None, ["data.format=csv"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(None, ["candidates.seed"])


def test_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[data\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["data.min_rating=3.5", "candidates.kinds=['pop','full']", "split.history_len=9"])
    p = tmp_path / "resolved.toml"
    p.write_text(dump_toml(cfg))
    assert load_config(p) == cfg
