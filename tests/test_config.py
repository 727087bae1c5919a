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


@pytest.mark.parametrize(("override", "message"), [
    ("train.max_steps=-1", "train.max_steps: must be >= 0; got -1"),
    ("train.valid_users=-1", "train.valid_users: must be >= 0; got -1"),
    ("train.max_users=-2", "train.max_users: must be >= 0; got -2"),
    ("train.history_len=-1", "train.history_len: must be >= 0; got -1"),
    ("train.learning_rate=0", "train.learning_rate: must be > 0; got 0.0"),
    ("train.learning_rate=-1e-4", "train.learning_rate: must be > 0; got -0.0001"),
    ("train.learning_rate=nan", "train.learning_rate: must be > 0; got nan"),
    ("train.warmup_ratio=1", r"train.warmup_ratio: must be in \[0, 1\); got 1.0"),
    ("train.warmup_ratio=-0.1", r"train.warmup_ratio: must be in \[0, 1\); got -0.1"),
    ("train.lora_rank=0", "train.lora_rank: must be >= 1; got 0"),
    ("train.lora_alpha=0", "train.lora_alpha: must be > 0; got 0"),
    ("train.lora_dropout=1.0", r"train.lora_dropout: must be in \[0, 1\); got 1.0"),
    ("train.lora_dropout=-0.5", r"train.lora_dropout: must be in \[0, 1\); got -0.5"),
    ("train.num_virtual_tokens=0", "train.num_virtual_tokens: must be >= 1; got 0"),
    ("train.patience=0", "train.patience: must be >= 1; got 0"),
])
def test_train_values_are_checked(override, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_config(None, [override])


def test_train_zero_means_derived_and_edges_are_allowed():
    t = load_config(None, ["train.max_steps=0", "train.valid_users=0", "train.max_users=0", "train.history_len=0",
                           "train.warmup_ratio=0", "train.lora_dropout=0", "train.patience=1"]).train
    assert (t.max_steps, t.valid_users, t.max_users, t.history_len, t.warmup_ratio, t.lora_dropout, t.patience) == (
        0, 0, 0, 0, 0.0, 0.0, 1)


@pytest.mark.parametrize(("adapter", "override", "kind"), [
    ("prompt-tuning", "train.lora_rank=16", "LoRA"),
    ("prompt-tuning", "train.lora_alpha=32", "LoRA"),
    ("prompt-tuning", "train.lora_dropout=0.0", "LoRA"),
    ("prompt-tuning", "train.lora_target_modules=['q_proj']", "LoRA"),
    ("lora", "train.num_virtual_tokens=8", "prompt-tuning"),
    ("lora", "train.prompt_init_text='Recommend a movie.'", "prompt-tuning"),
])
def test_other_adapter_kind_settings_are_refused(adapter, override, kind):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"^{key} is a {kind} setting; train.adapter is '{adapter}' "):
        load_config(None, [f"train.adapter={adapter}", override])
    # At its default value the setting is inert and accepted, like the shipped configs.
    assert load_config(None, [f"train.adapter={adapter}"]).train.adapter == adapter
