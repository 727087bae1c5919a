"""Shared fixtures: the real embedded ML-100K (fetched once into $LLMREC_HOME) and small hand-made data."""

from __future__ import annotations

import pytest

from llmrec import assets
from llmrec.config import DataConfig
from llmrec.data.loaders import load_dataset
from llmrec.data.split import leave_one_out


@pytest.fixture(scope="session")
def ml100k():
    assets.fetch("ml-100k")
    return load_dataset(DataConfig())


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    return leave_one_out(ml100k)


def train_cfg(*overrides: str):
    """The `[train]` section of the shipped config with `train.<key>=<value>` overrides."""
    from llmrec.config import load_config

    return load_config(None, list(overrides)).train


def sid_adapter(out, vectors):
    """A prepared ML-100K folder (sampled-20 and full candidates, 3-item histories), codes from
    `vectors` (2 levels of 16 + a unique level) and a sid/next_item_v1 LoRA trained for 4 steps on 40
    users' next-item codes: (config, `sid build` result, training result)."""
    from llmrec.config import apply_overrides, from_dict, load_config, to_dict
    from llmrec.recipes import prepare, sid, train

    cfg = load_config("scripts/configs/ml100k.toml", [
        f"out_dir={out}", "candidates.kinds=['sampled', 'full']", "split.history_len=3",
        f"sid.vectors={vectors}", "sid.levels=2", "sid.codebook=16", "sid.name=bpr-2x16"])
    prepare.run(cfg, log=lambda *_: None)
    built = sid.run(cfg, log=lambda *_: None)
    cfg = from_dict(type(cfg), apply_overrides(to_dict(cfg), [
        "train.template=sid/next_item_v1", f"train.sid={built['folder']}", "train.max_users=40",
        "train.history_len=3", "train.prefixes_per_user=2", "train.valid_users=4", "train.batch_size=4",
        "train.max_steps=4", "train.eval_every=2", "train.learning_rate=1e-2", "train.lora.dropout=0.0",
        "train.warmup_ratio=0", "train.patience=5"]))
    return cfg, built, train.run(cfg, log=lambda *_: None)


def write_recbole(folder, name, inter_rows, item_rows,
                  inter_header="user_id:token\titem_id:token\trating:float\ttimestamp:float",
                  item_header="item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"):
    """Write a tiny RecBole atomic dataset and return its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter").write_text("\n".join([inter_header, *inter_rows]) + "\n")
    (folder / f"{name}.item").write_text("\n".join([item_header, *item_rows]) + "\n")
    return folder


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, ml100k):
    """A prepared ML-100K out_dir (sampled-20 test candidates) and its config, histories of 5 items."""
    from llmrec.config import load_config
    from llmrec.recipes import prepare

    out = tmp_path_factory.mktemp("prepared")
    cfg = load_config("scripts/configs/ml100k.toml", [f"out_dir={out}", "candidates.kinds=['sampled']",
                                                       "candidates.stages=['test']", "split.history_len=5"])
    prepare.run(cfg, log=lambda *_: None)
    return cfg


@pytest.fixture(scope="session")
def tokenizer():
    from llmrec.models.load import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def hf_backend():
    from llmrec.backends.hf import HFBackend

    return HFBackend("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def ml100k_vectors(tmp_path_factory, ml100k_split):
    """A vectors.npz over every ML-100K user and item (seeded random, d=8), as a baseline run writes it."""
    import numpy as np

    from llmrec.baselines.vectors import Vectors

    rng = np.random.default_rng(0)
    users = sorted(ml100k_split.users)
    items = sorted({i for s in ml100k_split for i in s.items})
    vec = Vectors("bpr", users, items, rng.normal(size=(len(users), 8)).astype(np.float32),
                  rng.normal(size=(len(items), 8)).astype(np.float32), rng.normal(size=len(items)).astype(np.float32))
    folder = tmp_path_factory.mktemp("vectors")
    vec.save(folder)
    return folder


@pytest.fixture(scope="session")
def cf_slots(ml100k_vectors, tokenizer):
    """An (untrained) collaborative-token table for SmolLM2 over `ml100k_vectors`."""
    from llmrec.models import cf

    return cf.build_table(str(ml100k_vectors), 49152, 576, tokenizer, proj_hidden=32)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for the session's Ray-engine tests; jobs join it (ray_address=auto)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()
