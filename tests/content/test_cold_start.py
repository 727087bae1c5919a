"""The cold-start split: held-out items never trained on, cold/warm candidate files, the option off unchanged."""

import hashlib
import json
from pathlib import Path

import pytest

from llmrec.config import SplitConfig, load_config
from llmrec.data.candidates import CandidateSet
from llmrec.data.split import Split, hold_out_items
from llmrec.errors import ConfigError
from llmrec.recipes import prepare

# What `llmrec prepare` wrote for the default ML-100K config before the cold-start option existed
# (runs/ml-100k; sampled-20.test's digest is the `source_sha256` of the runs measured on it).
SPLIT_SHA256 = "186124173ef5639bb170236b9f1bb3fe6f6da0a54dd112e7e6716705380c5d69"
SAMPLED_TEST_SHA256 = "1c2eacab4bafb2953d01971b7c35b3551e2a22fb3867a13b8f2eae24f19f6d3e"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_held_out_items_never_reach_training(ml100k_split):
    cold = hold_out_items(ml100k_split, 0.1, seed=0)
    assert len(cold.cold_items) == 168  # 10% of 1682
    assert len(cold) == 943 and cold.skipped_users == 0
    for s in cold:
        assert not set(s.train) & cold.cold_items and s.valid not in cold.cold_items
        original = ml100k_split[s.user_id].items
        if original[-1] in cold.cold_items:
            assert s.items == tuple(i for i in original[:-1] if i not in cold.cold_items) + (original[-1],)
        else:
            assert s.items == tuple(i for i in original if i not in cold.cold_items)
    cold_targets = [s for s in cold if s.test in cold.cold_items]
    assert 30 < len(cold_targets) < 150
    assert hold_out_items(ml100k_split, 0.1, seed=0).cold_items == cold.cold_items  # reproducible
    assert hold_out_items(ml100k_split, 0.1, seed=1).cold_items != cold.cold_items
    with pytest.raises(ConfigError, match=r"split.cold_items: .* in \[0, 1\); got 1.5"):
        SplitConfig(cold_items=1.5)


def test_split_file_round_trip_keeps_cold_items(tmp_path, ml100k_split):
    cold = hold_out_items(ml100k_split, 0.05, seed=3)
    cold.save(tmp_path / "split.jsonl")
    back = Split.load(tmp_path / "split.jsonl")
    assert back.cold_items == cold.cold_items and back.users == cold.users


def _prepare(out: Path, *overrides: str):
    cfg = load_config("scripts/configs/ml100k.toml", [f"out_dir={out}", "candidates.kinds=['sampled']", *overrides])
    return prepare.run(cfg, log=lambda *_: None)


def test_option_off_is_byte_identical(tmp_path, ml100k):
    _prepare(tmp_path / "off")
    assert sha256(tmp_path / "off" / "split.jsonl") == SPLIT_SHA256
    assert sha256(tmp_path / "off" / "candidates" / "sampled-20.test.jsonl") == SAMPLED_TEST_SHA256
    assert "cold_items" not in json.loads((tmp_path / "off" / "prepared.json").read_text())["split"]
    assert sorted(p.name for p in (tmp_path / "off" / "candidates").iterdir()) == [
        "sampled-20.test.jsonl", "sampled-20.valid.jsonl"]


def test_cold_candidate_files(tmp_path, ml100k):
    result = _prepare(tmp_path / "cold", "split.cold_items=0.1")
    folder = tmp_path / "cold" / "candidates"
    assert sorted(p.name for p in folder.iterdir()) == [
        "sampled-20-cold.test.jsonl", "sampled-20-warm.test.jsonl", "sampled-20.test.jsonl", "sampled-20.valid.jsonl"]
    split = Split.load(tmp_path / "cold" / "split.jsonl")
    assert len(split.cold_items) == 168 and result.stats["cold_test_users"] > 30
    every = CandidateSet.load(folder / "sampled-20.test.jsonl")
    cold = CandidateSet.load(folder / "sampled-20-cold.test.jsonl")
    warm = CandidateSet.load(folder / "sampled-20-warm.test.jsonl")
    assert (cold.label, warm.label, every.label) == ("sampled-20-cold", "sampled-20-warm", "sampled-20")
    assert len(cold.lists) == result.stats["cold_test_users"] and len(cold.lists) + len(warm.lists) == 943
    assert all(c.positive in split.cold_items and c.positive == split[c.user_id].test for c in cold.lists)
    assert not any(c.positive in split.cold_items for c in warm.lists)
    assert cold.lists + warm.lists == sorted(every.lists, key=lambda c: c.positive not in split.cold_items)
    for c in every.lists + CandidateSet.load(folder / "sampled-20.valid.jsonl").lists:  # cold items: positives only
        assert not set(c.candidates) - {c.positive} & split.cold_items
