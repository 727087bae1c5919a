"""A `prepare` that fails half-way leaves nothing a later command trusts or a retry refuses."""

import json

import pytest

from llmrec.config import load_config
from llmrec.data.candidates import CandidateSet
from llmrec.data.prepared import open_prepared
from llmrec.errors import ConfigError, DataError
from llmrec.recipes import prepare
from tests.conftest import write_recbole

ITEMS = [f"{i}\tMovie {i}\t199{i}\tDrama" for i in range(1, 9)]
SEQUENCES = {"1": [1, 4, 5, 2, 3], "2": [4, 5, 6, 1], "3": [2, 7, 8, 1, 6], "4": [5, 6, 4, 8], "5": [1, 2, 7, 3]}


def quiet(*_):
    pass


def write_data(folder, bad_timestamp=None):
    """Ratings 2 for user 5's items, 4 otherwise; `bad_timestamp` replaces user 3's third one (file line 13)."""
    rows = [f"{u}\t{i}\t{2 if u == '5' else 4}\t{bad_timestamp if (u, t) == ('3', 2) and bad_timestamp else 1000 + t}"
            for u, seq in SEQUENCES.items() for t, i in enumerate(seq)]
    return write_recbole(folder, "tiny", rows, ITEMS)


def config(folder, out, *extra):
    return load_config(None, [f"data.path={folder}", 'data.dataset="tiny"', f"out_dir={out}", "candidates.n=3",
                              "candidates.kinds=['sampled']", "candidates.stages=['valid', 'test']", *extra])


def fail_half_way(monkeypatch, cfg):
    """Run `prepare` with a disk that fills up while it writes the candidate files (after the split)."""
    def full_disk(self, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(CandidateSet, "save", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        prepare.run(cfg, log=quiet)
    monkeypatch.undo()


@pytest.mark.parametrize("retry_extra", [(), ("data.min_rating=3",)], ids=["same-settings", "other-settings"])
def test_a_prepare_that_failed_half_way_is_not_opened_and_a_retry_replaces_it(tmp_path, monkeypatch, retry_extra):
    folder, out = write_data(tmp_path / "data"), tmp_path / "prepared"
    cfg = config(folder, out)
    fail_half_way(monkeypatch, cfg)
    assert (out / "split.jsonl").is_file() and not list((out / "candidates").iterdir())
    assert json.loads((out / "prepared.json").read_text())["complete"] is False
    with pytest.raises(DataError, match=rf"^{out}: `llmrec prepare` did not finish there; run it again: "
                                        r"`llmrec prepare "):
        open_prepared(cfg, log=quiet)

    retry = config(folder, out, *retry_extra)
    res = prepare.run(retry, log=quiet)  # no "prepared from other data" refusal
    record = json.loads((out / "prepared.json").read_text())
    assert "complete" not in record and record["data"]["min_rating"] == (3.0 if retry_extra else None)
    assert sorted(p.name for p in res.candidate_files) == ["sampled-3.test.jsonl", "sampled-3.valid.jsonl"]
    assert res.stats["split_users"] == (4 if retry_extra else 5)  # min_rating 3 drops user 5's ratings of 2
    opened = open_prepared(retry, log=quiet)
    assert opened.cfg.data.min_rating == (3.0 if retry_extra else None) and len(opened.split()) == res.stats["split_users"]
    # Complete again, the folder is protected: a prepare from the other settings must ask for --force.
    with pytest.raises(ConfigError, match="was prepared from other data"):
        prepare.run(config(folder, out, *(() if retry_extra else ("data.min_rating=3",))), log=quiet)


@pytest.mark.parametrize("half_prepared", [False, True], ids=["fresh", "after-a-failed-prepare"])
def test_a_millisecond_timestamp_fails_prepare_and_the_fixed_retry_succeeds(tmp_path, monkeypatch, half_prepared):
    folder, out = tmp_path / "data", tmp_path / "prepared"
    cfg = config(folder, out)
    if half_prepared:
        write_data(folder)
        fail_half_way(monkeypatch, cfg)
    write_data(folder, bad_timestamp=1e12)
    with pytest.raises(DataError, match=rf"^{folder / 'tiny.inter'}:13: column 'timestamp': 1e\+12 is outside "
                                        r"the dates a timestamp can name"):
        prepare.run(cfg, log=quiet)
    with pytest.raises(DataError, match="did not finish there" if half_prepared else "is not a prepared folder"):
        open_prepared(cfg, log=quiet)

    write_data(folder)
    res = prepare.run(cfg, log=quiet)
    assert "complete" not in json.loads((out / "prepared.json").read_text())
    assert res.stats["split_users"] == 5 and len(open_prepared(cfg, log=quiet).split()) == 5
