import hashlib
import json
import random

import numpy as np
import pytest

from llmrec.config import DataConfig, SplitConfig
from llmrec.data.loaders import load_recbole
from llmrec.data.split import Split, leave_one_out, tie_hash
from llmrec.errors import ConfigError
from tests.conftest import write_recbole

ITEMS = [f"{i}\tMovie {i}\t1990\tDrama" for i in range(1, 10)]


def test_invariants_on_ml100k(ml100k, ml100k_split):
    split = ml100k_split
    assert len(split) == 943 and split.skipped_users == 0 and split.repeats_dropped == 0
    assert split.tie_break == "hash"
    total = 0
    for s in split:
        assert s.test not in s.history("test")  # ML-100K has no repeated (user, item) pairs
        assert s.history("test") == (*s.train, s.valid)
        assert s.history("valid") == s.train
        assert list(s.timestamps) == sorted(s.timestamps)
        total += len(s.items)
    assert total == ml100k.n_interactions  # every interaction is in exactly one part


TIED = ["u1\t9\t5\t100", "u1\t2\t4\t100", "u1\t1\t3\t50", "u1\t5\t3\t100", "u2\t1\t3\t1", "u2\t2\t3\t2"]


def blake(seed, user, item):
    return int.from_bytes(hashlib.blake2b(f"{seed}\x1f{user}\x1f{item}".encode(), digest_size=8).digest(), "big")


def test_tie_break_file_keeps_file_order(tmp_path):
    # Items 9, 2, 5 are rated in the same second; with "file", file order decides, not the item id.
    ds = load_recbole(write_recbole(tmp_path, "t", TIED, ITEMS), "t", DataConfig())
    split = leave_one_out(ds, tie_break="file")
    assert split["u1"].items == ("1", "9", "2", "5")
    assert (split["u1"].valid, split["u1"].test) == ("2", "5")
    assert split.skipped_users == 1  # u2 has only two interactions
    assert (split.tie_break, split.seed) == ("file", 0)
    assert leave_one_out(ds, tie_break="file").users == split.users  # stable


def test_tie_break_hash_orders_ties_by_seeded_hash(tmp_path):
    ds = load_recbole(write_recbole(tmp_path, "t", TIED, ITEMS), "t", DataConfig())
    expected = sorted(["9", "2", "5"], key=lambda i: blake(0, "u1", i))
    assert expected == ["5", "9", "2"]  # neither item-id order nor file order
    split = leave_one_out(ds)  # "hash" is the default
    assert split["u1"].items == ("1", *expected)
    assert tie_hash(0, "u1", "9") == blake(0, "u1", "9") == 16810357704318648004  # platform-stable
    assert (split.tie_break, split.seed) == ("hash", 0)
    assert leave_one_out(ds).users == split.users  # deterministic
    with pytest.raises(ConfigError, match=r"split.tie_break: expected one of hash, file; got 'id'"):
        leave_one_out(ds, tie_break="id")
    with pytest.raises(ConfigError, match=r"split.tie_break: expected one of hash, file; got 'random'"):
        SplitConfig(tie_break="random")
    assert (SplitConfig().tie_break, SplitConfig().seed) == ("hash", 0)


def _sorted_dump(tmp_path, n_users=200, k=3):
    """Each user: 4 items at distinct times, then k items in one second; rows sorted by user, item id."""
    rng = random.Random(1)
    rows, tied = [], {}
    for u in range(n_users):
        items = rng.sample(range(1, 61), 4 + k)
        times = dict(zip(items, [1, 2, 3, 4] + [10] * k))
        tied[str(u)] = [str(i) for i in items[4:]]
        rows += [f"{u}\t{i}\t4\t{times[i]}" for i in sorted(items)]
    items = [f"{i}\tMovie {i}\t1990\tDrama" for i in range(1, 61)]
    return load_recbole(write_recbole(tmp_path, "t", rows, items), "t", DataConfig()), tied


def test_hash_tie_break_removes_item_id_leak(tmp_path):
    ds, tied = _sorted_dump(tmp_path)
    by_file, by_hash = leave_one_out(ds, tie_break="file"), leave_one_out(ds, tie_break="hash")
    highest = {u: max(g, key=int) for u, g in tied.items()}
    assert all(by_file[u].test == highest[u] for u in tied)  # the leak: always the highest tied id
    share = sum(by_hash[u].test == highest[u] for u in tied) / len(tied)
    assert 0.2 < share < 0.6  # about 1/3 with k = 3
    assert all(by_hash[u].test in tied[u] and by_hash[u].valid in tied[u] for u in tied)


def test_seed_changes_tied_order(tmp_path):
    ds, tied = _sorted_dump(tmp_path)
    s0, s1 = leave_one_out(ds, seed=0), leave_one_out(ds, seed=1)
    changed = sum(s0[u].items != s1[u].items for u in tied)
    assert 100 < changed < 200  # 5 of 6 orders of 3 tied items differ
    assert s1.seed == 1 and leave_one_out(ds, seed=1).users == s1.users
    assert all(s0[u].items[:4] == s1[u].items[:4] for u in tied)  # untied interactions keep their order


def test_repeated_item_is_never_both_target_and_history(tmp_path):
    rows = ["u1\t3\t2\t1", "u1\t1\t4\t2", "u1\t2\t4\t3", "u1\t3\t5\t4",  # test item seen before
            "u2\t4\t3\t1", "u2\t5\t3\t2", "u2\t4\t4\t3", "u2\t6\t3\t4",  # valid item seen before
            "u3\t1\t3\t1", "u3\t1\t3\t2", "u3\t2\t3\t3"]  # two distinct items: skipped
    ds = load_recbole(write_recbole(tmp_path, "t", rows, ITEMS), "t", DataConfig())
    split = leave_one_out(ds)
    assert split["u1"].items == ("1", "2", "3") and split["u1"].ratings == (4.0, 4.0, 5.0)
    assert split["u2"].items == ("5", "4", "6") and split["u2"].timestamps == (2.0, 3.0, 4.0)
    for s in split:
        assert s.test not in s.history("test") and s.valid not in s.train
    assert split.repeats_dropped == 3 and split.skipped_users == 1 and len(split) == 2
    split.save(tmp_path / "split.jsonl")
    loaded = Split.load(tmp_path / "split.jsonl")
    assert (loaded.repeats_dropped, loaded.tie_break, loaded.seed) == (3, "hash", 0)


def test_history_truncation_and_events(ml100k, ml100k_split):
    s = max(ml100k_split, key=lambda s: len(s.items))
    h = s.history("test", max_len=5)
    assert h == s.items[-6:-1]
    events = s.events(ml100k, "test", max_len=5)
    assert [e.item.id for e in events] == list(h)
    assert [e.timestamp for e in events] == list(s.timestamps[-6:-1])


def test_save_load_round_trip(tmp_path, ml100k_split):
    ml100k_split.save(tmp_path / "split.jsonl")
    loaded = Split.load(tmp_path / "split.jsonl")
    assert loaded.users == ml100k_split.users and loaded.dataset_hash == ml100k_split.dataset_hash


def test_split_meta_round_trip_and_old_files(tmp_path, ml100k):
    split = leave_one_out(ml100k, tie_break="hash", seed=7)
    split.save(tmp_path / "split.jsonl")
    loaded = Split.load(tmp_path / "split.jsonl")
    assert (loaded.tie_break, loaded.seed, loaded.repeats_dropped) == ("hash", 7, 0)
    assert loaded.users == split.users
    old = tmp_path / "old.jsonl"  # written before tie_break/seed/repeats_dropped were recorded
    old.write_text(json.dumps({"meta": {"method": "leave-one-out", "dataset_hash": "abc", "skipped_users": 2}})
                   + "\n" + json.dumps({"user_id": "u", "items": ["1", "2", "3"], "ratings": [1, 1, 1],
                                         "timestamps": [1, 2, 3]}) + "\n")
    loaded = Split.load(old)
    assert (loaded.tie_break, loaded.seed, loaded.repeats_dropped, loaded.skipped_users) == ("file", 0, 0, 2)


# Global time: a cut at t = 10. u1: items 1,2,3 before, 4 then 5 after; u2: 3 before (one repeated), 3 again
# and 6 after; u3: only one item before; u4: nothing new after; u5: only after the cut; u6: nothing after.
TIMELINE = ["u1\t1\t4\t1", "u1\t2\t4\t2", "u1\t3\t5\t3", "u1\t4\t3\t10", "u1\t5\t3\t11",
            "u2\t3\t2\t1", "u2\t2\t4\t2", "u2\t3\t5\t4", "u2\t3\t4\t12", "u2\t6\t4\t13",
            "u3\t1\t4\t5", "u3\t2\t4\t15",
            "u4\t1\t4\t1", "u4\t2\t4\t2", "u4\t1\t4\t20",
            "u5\t1\t4\t11", "u5\t2\t4\t12", "u5\t3\t4\t13",
            "u6\t5\t4\t1", "u6\t6\t4\t2", "u6\t7\t4\t3"]


def test_global_time_split_keeps_the_past_and_the_first_new_item_after_the_cut(tmp_path):
    from llmrec.data.split import global_time

    ds = load_recbole(write_recbole(tmp_path, "t", TIMELINE, ITEMS), "t", DataConfig())
    split = global_time(ds, "10")
    assert (split.method, split.cut) == ("global-time", 10.0)
    assert split["u1"].items == ("1", "2", "3", "4") and (split["u1"].valid, split["u1"].test) == ("3", "4")
    # u2's repeat before the cut keeps its latest occurrence; 3 again after the cut is not new, 6 is
    assert split["u2"].items == ("2", "3", "6") and split["u2"].timestamps == (2.0, 4.0, 13.0)
    assert split["u2"].ratings == (4.0, 5.0, 4.0)
    assert sorted(split.users) == ["u1", "u2", "u6"] and split.skipped_users == 3  # u3, u4, u5
    assert split.train_only == {"u6"} and split["u6"].items == ("5", "6", "7")  # trains, never tested
    assert [s.user_id for s in split.evaluated("test")] == ["u1", "u2"]
    assert [s.user_id for s in split.evaluated("valid")] == ["u1", "u2", "u6"]
    assert split.repeats_dropped == 1
    for s in split.evaluated("test"):  # nothing at or after the cut but the test target
        assert max(s.timestamps[:-1]) < 10 <= s.timestamps[-1]
    assert max(split["u6"].timestamps) < 10
    split.save(tmp_path / "split.jsonl")
    loaded = Split.load(tmp_path / "split.jsonl")
    assert (loaded.method, loaded.cut, loaded.users, loaded.train_only) == ("global-time", 10.0, split.users, {"u6"})


def test_global_time_cut_as_share_date_or_error(tmp_path):
    from llmrec.data.split import cut_time, global_time

    ds = load_recbole(write_recbole(tmp_path, "t", TIMELINE, ITEMS), "t", DataConfig())
    times = sorted(float(r.split("\t")[3]) for r in TIMELINE)
    assert cut_time(ds, "0.5") == times[10] == 4.0  # the lower 50% quantile of the 21 timestamps
    assert cut_time(ds, "0.6") == times[12] == 10.0
    assert global_time(ds, "0.6").users == global_time(ds, "10").users
    assert cut_time(ds, "1970-01-01T00:00:10") == 10.0 == cut_time(ds, "1970-01-01T00:00:10+00:00")
    assert cut_time(ds, "2018-01-01") == 1514764800.0
    for bad in ("yesterday", "0", "-3", "1.0e"):
        with pytest.raises(ConfigError, match=rf"split.cut: .*got '{bad}'"):
            cut_time(ds, bad)


def test_global_time_split_on_ml100k_never_trains_on_the_future(ml100k):
    from llmrec.data.split import global_time, train_item_counts

    split = global_time(ml100k, "0.9")
    df = ml100k.interactions
    assert split.cut == float(np.quantile(df["timestamp"].to_numpy(np.float64), 0.9, method="lower"))
    tested = list(split.evaluated("test"))
    assert 0 < len(tested) < len(split) and len(split) + split.skipped_users == df["user_id"].nunique()
    for s in tested:
        assert max(s.timestamps[:-1]) < split.cut <= s.timestamps[-1]
        assert s.test not in s.history("test")
    # every user with a new item after the cut and two before it is in the split
    after = df[df["timestamp"] >= split.cut].groupby("user_id")["item_id"].apply(set)
    before = df[df["timestamp"] < split.cut].groupby("user_id")["item_id"].apply(set)
    expected = {u for u in after.index if u in before.index and len(before[u]) >= 2 and after[u] - before[u]}
    assert {s.user_id for s in tested} == expected
    for u in split.train_only:  # the other users train on their past only
        assert max(split[u].timestamps) < split.cut and len(before[u]) >= 3
    universe = sorted(ml100k.items)
    counts = train_item_counts(split, universe)
    assert counts.sum() == sum(len(s.train) for s in split)


def test_prepare_global_time_records_the_cut_and_refuses_an_empty_split(tmp_path):
    from llmrec.config import load_config
    from llmrec.data.prepared import open_prepared
    from llmrec.errors import DataError
    from llmrec.recipes import prepare

    folder = write_recbole(tmp_path / "data", "t", TIMELINE, ITEMS)
    args = [f"data.path={folder}", 'data.dataset="t"', "candidates.n=2", "candidates.kinds=['sampled', 'full']",
            'split.method="global-time"']
    lines: list[str] = []
    cfg = load_config(None, [*args, f"out_dir={tmp_path / 'out'}", 'split.cut="1970-01-01T00:00:10"'])
    prepare.run(cfg, log=lines.append)
    assert any(x.startswith("global-time split at 1970-01-01T00:00:10+00:00 (split.cut='1970-01-01T00:00:10'): "
                            "2 users with a new item after the cut, 1 train only, 3 skipped") for x in lines)
    p = open_prepared(load_config(None, [f"out_dir={tmp_path / 'out'}"]))
    assert p.cfg.split.method == "global-time" and p.cfg.split.cut == "1970-01-01T00:00:10"
    assert p.split().users == prepare.global_time(p.dataset(), "10").users
    cands = [json.loads(x) for x in (tmp_path / "out" / "candidates" / "full.test.jsonl").read_text().splitlines()[1:]]
    assert [(c["user_id"], c["positive"], c["candidates"]) for c in cands] == [("u1", "4", ["4", "5", "6", "7"]),
                                                                          ("u2", "6", ["1", "4", "5", "6", "7"])]
    with pytest.raises(DataError, match=r"global-time split left no user to evaluate \(4 train only, 2 skipped\); "
                                        r"split.cut='2030-01-01' may lie outside"):
        prepare.run(load_config(None, [*args, f"out_dir={tmp_path / 'late'}", 'split.cut="2030-01-01"']),
                    log=lines.append)


def test_split_cut_setting_reads_dates_and_numbers_as_one_text():
    from llmrec.config import load_config

    assert load_config(None, ["split.cut=1998-03-01"]).split.cut == "1998-03-01"  # a TOML date
    assert load_config(None, ["split.cut=1998-03-01T10:00:00"]).split.cut == "1998-03-01T10:00:00"
    assert load_config(None, ["split.cut=0.8"]).split.cut == "0.8" == load_config(None, ['split.cut="0.8"']).split.cut
    with pytest.raises(ConfigError, match=r"split.method: expected one of leave-one-out, ratio, global-time; got 'rat'"):
        load_config(None, ["split.method=rat"])
