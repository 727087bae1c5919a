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
    with pytest.raises(ConfigError, match="data.format 'csv' needs data.path and data.items_path"):
        load_config(None, ["data.format=csv"])
    with pytest.raises(ConfigError, match="data.format: unknown data format 'xml'; known: csv, hf, jsonl, parquet, recbole"):
        load_config(None, ["data.format=xml"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(None, ["candidates.seed"])


def test_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[data\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(p)
    latin = tmp_path / "latin.toml"
    latin.write_bytes("[data]\nitem_noun = 'pel\xedcula'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.toml: not UTF-8 text \(byte 23\); save the config as UTF-8"):
        load_config(latin)
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
    ("train.lora.rank=0", "train.lora.rank must be >= 1 and train.lora.alpha > 0; got 0, 16"),
    ("train.lora.alpha=0", "train.lora.rank must be >= 1 and train.lora.alpha > 0; got 8, 0"),
    ("train.lora.dropout=1.0", r"train.lora.dropout: must be in \[0, 1\); got 1.0"),
    ("train.lora.dropout=-0.5", r"train.lora.dropout: must be in \[0, 1\); got -0.5"),
    ("train.lora.target_modules=['q_proj','lm_head']", "train.lora.target_modules: lm_head cannot be a LoRA target"),
    ("train.prompt_tuning.num_virtual_tokens=0", "train.prompt_tuning.num_virtual_tokens: must be >= 1; got 0"),
    ("train.cf.unknown_rate=1", r"train.cf.unknown_rate: must be in \[0, 1\); got 1.0"),
    ("train.scheduler=step", "train.scheduler: expected one of cosine, linear; got 'step'"),
    ("train.patience=0", "train.patience: must be >= 1; got 0"),
])
def test_train_values_are_checked(override, message):
    adapter = ["train.adapter=prompt-tuning"] if "prompt_tuning" in override else []
    with pytest.raises(ConfigError, match=f"^{message}"):
        load_config(None, [*adapter, override])


def test_train_zero_means_derived_and_edges_are_allowed():
    t = load_config(None, ["train.max_steps=0", "train.valid_users=0", "train.max_users=0", "train.history_len=0",
                           "train.warmup_ratio=0", "train.lora.dropout=0", "train.patience=1"]).train
    assert (t.max_steps, t.valid_users, t.max_users, t.history_len, t.warmup_ratio, t.adapter_settings.dropout,
            t.patience) == (0, 0, 0, 0, 0.0, 0.0, 1)


def test_tables_of_other_entries_are_checked_but_unused():
    """One file may hold the tables of several backends, baselines or adapter kinds: each is checked
    against its own settings, and only the selected entry's is used."""
    cfg = load_config(None, ["train.adapter=prompt-tuning", "train.lora.rank=16", "backend.vllm.enforce_eager=true",
                             "baseline.sasrec.patience=4", "train.prompt_tuning.num_virtual_tokens=8"])
    assert cfg.train.adapter_settings.num_virtual_tokens == 8 and cfg.train.adapters["lora"].rank == 16
    assert cfg.backend_settings.batch_tokens == 4096 and cfg.backend["vllm"].enforce_eager is True
    assert cfg.baseline.name == "bpr" and cfg.baseline.settings().patience == 20  # bpr's own default
    with pytest.raises(ConfigError, match="unknown config key 'train.lora.num_virtual_tokens'"):
        load_config(None, ["train.adapter=prompt-tuning", "train.lora.num_virtual_tokens=8"])
    with pytest.raises(ConfigError, match="backend.vllm.gpu_memory_utilization: must be in"):
        load_config(None, ["backend.vllm.gpu_memory_utilization=2.0"])


@pytest.mark.parametrize(("override", "new"), [
    ("rank.batch_tokens=100", "backend.hf.batch_tokens"),
    ("rank.shared_prefix=false", "backend.hf.shared_prefix"),
    ("vllm.enforce_eager=true", r"backend.vllm.enforce_eager \(the \[vllm\] table is now \[backend.vllm\]\)"),
    ("rank.ray_address=local", "rank.ray.address"),
    ("rank.actors=2", "rank.ray.actors"),
    ("rank.output=parquet", "rank.ray.output"),
    ("baseline.epochs=3", r"baseline.bpr.epochs \(each model's settings"),
    ("train.lora_rank=4", "train.lora.rank"),
    ("train.num_virtual_tokens=4", "train.prompt_tuning.num_virtual_tokens"),
    ("train.prompt_init_text='x'", "train.prompt_tuning.init_text"),
    ("train.cf_vectors=x", "train.cf.vectors"),
    ("train.cf_residual=true", "train.cf.residual"),
    ("train.curriculum=x", "train.cf.curriculum"),
])
def test_moved_keys_name_their_new_place(override, new):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"^config key '{key}' moved: {new}"):
        load_config(None, [override])


def test_sections_per_component(tmp_path):
    """Each component's settings are its own table, typed by its registered settings class, and the
    resolved config round-trips through TOML with them."""
    cfg = load_config(None, ["rank.backend=vllm", "backend.vllm.enforce_eager=true", "rank.ray.actors=3",
                             "baseline.name=sasrec", "baseline.sasrec.patience=4", "train.lora.rank=4",
                             "train.cf.residual=true"])
    assert cfg.backend_settings.enforce_eager is True and cfg.rank.ray.actors == 3
    assert cfg.baseline.settings().patience == 4 and cfg.baseline.settings().max_len == 50  # its own default
    assert cfg.train.adapter_settings.rank == 4 and cfg.train.cf.residual is True
    text = dump_toml(cfg)
    assert "[backend.vllm]\nenforce_eager = true" not in text or "[backend.vllm]" in text
    for table in ("[rank.ray]", "[backend.vllm]", "[baseline.sasrec]", "[train.lora]", "[train.cf]"):
        assert table in text
    p = tmp_path / "resolved.toml"
    p.write_text(text)
    assert load_config(p) == cfg
    with pytest.raises(ConfigError, match=r"unknown config key 'baseline.sasrec.neighbours'; known keys: \["
                                          "'batch_size', 'dropout', 'embedding_size', 'epochs', 'heads'"):
        load_config(None, ["baseline.name=sasrec", "baseline.sasrec.neighbours=4"])
    with pytest.raises(ConfigError, match="unknown config table 'baseline.nope'"):
        load_config(None, ["baseline.nope.x=1"])
    with pytest.raises(ConfigError, match="rank.backend: unknown backend 'tgi'; known: hf, vllm"):
        load_config(None, ["rank.backend=tgi"])
    with pytest.raises(ConfigError, match="model.dtype: expected one of auto, float32, bfloat16, float16, float64; got 'int8'"):
        load_config(None, ["model.dtype=int8"])


def test_paper_recipes_load_and_name_registered_data():
    """Each paper recipe is a valid config on a registered dataset, and says how it differs."""
    from pathlib import Path

    from llmrec.registry import DATASETS

    recipes = sorted(Path("scripts/configs/papers").glob("*.toml"))
    assert {p.stem for p in recipes} >= {"llara_movielens", "tiger_beauty"}
    for path in recipes:
        cfg = load_config(str(path))
        assert cfg.data.dataset in DATASETS and cfg.out_dir.startswith("runs/papers/")
        assert "differs" in path.read_text()
    llara = load_config("scripts/configs/papers/llara_movielens.toml")
    assert (llara.split.history_len, llara.rank.candidates) == (10, "window-20.test")
