"""The per-user ratio split and its several held-out items per user, from the split to the metrics."""

import json
import math

import numpy as np
import pytest

from llmrec.config import DataConfig, SplitConfig, load_config, parse_ratio
from llmrec.data import candidates as cands
from llmrec.data.loaders import load_recbole
from llmrec.data.split import Split, by_ratio, held_out_sizes, hold_out_items, leave_one_out
from llmrec.errors import ConfigError, DataError
from tests.conftest import write_recbole

ITEMS = [f"{i}\tMovie {i}\t1990\tDrama" for i in range(1, 41)]
# u1 has 20 items (2 test, 2 validation), u2 14 (1 + 1), u3 3 (1 + 1 + 1), u4 2 (skipped)
ROWS = ([f"u1\t{i}\t4\t{i}" for i in range(1, 21)] + [f"u2\t{i}\t3\t{100 + i}" for i in range(10, 24)]
        + ["u3\t1\t5\t1", "u3\t2\t5\t2", "u3\t30\t5\t3", "u4\t1\t5\t1", "u4\t2\t5\t2"])


@pytest.fixture
def tiny(tmp_path):
    return load_recbole(write_recbole(tmp_path / "data", "t", ROWS, ITEMS), "t", DataConfig())


def test_ratio_setting_is_read_and_checked():
    assert parse_ratio("8:1:1") == pytest.approx((0.8, 0.1, 0.1)) == parse_ratio("0.8:0.1:0.1")
    for bad in ("8:1", "8:0:2", "a:b:c", "8:-1:3"):
        with pytest.raises(ConfigError, match=rf"split.ratio: expected three positive .*got '{bad}'"):
            parse_ratio(bad)
    with pytest.raises(ConfigError, match="split.ratio"):
        SplitConfig(method="ratio", ratio="7:3")
    with pytest.raises(ConfigError, match="does not combine with split.method=ratio"):
        SplitConfig(method="ratio", cold_items=0.1)
    # the shares rounded to the nearest item, each part at least one item
    shares = parse_ratio("8:1:1")
    assert [held_out_sizes(n, shares) for n in (3, 4, 14, 15, 20, 100)] == [
        (1, 1), (1, 1), (1, 1), (2, 2), (2, 2), (10, 10)]
    assert held_out_sizes(3, parse_ratio("1:2:2")) == (1, 1) and held_out_sizes(5, parse_ratio("1:2:2")) == (2, 2)


def test_ratio_split_holds_out_the_last_items_by_share(tiny, tmp_path):
    split = by_ratio(tiny)
    assert (split.method, split.ratio, split.skipped_users) == ("ratio", "8:1:1", 1)
    u1 = split["u1"]
    assert (u1.n_train, u1.n_valid, u1.n_test) == (16, 2, 2)
    assert u1.targets("valid") == ("17", "18") and u1.targets("test") == ("19", "20")
    assert u1.history("test") == (*u1.train, "17", "18") and u1.history("valid") == u1.train
    assert u1.history("test", 3) == ("16", "17", "18")
    with pytest.raises(DataError, match=r"user 'u1' has 2 held-out test items \(a ratio split\).*full.test"):
        _ = u1.test
    with pytest.raises(ConfigError, match="does not combine with split.method=ratio"):
        hold_out_items(split, 0.2, 0)
    assert (split["u2"].valid, split["u2"].test) == ("22", "23")  # one each: as leave-one-out
    assert split["u3"].targets("test") == ("30",) and split["u3"].train == ("1",)
    split.save(tmp_path / "split.jsonl")
    loaded = Split.load(tmp_path / "split.jsonl")
    assert loaded.users == split.users and (loaded.method, loaded.ratio) == ("ratio", "8:1:1")


def test_ratio_split_on_ml100k_keeps_every_interaction_once(ml100k):
    split, loo = by_ratio(ml100k, "8:1:1"), leave_one_out(ml100k)
    assert len(split) == len(loo) == 943
    for s in split:
        n = len(s.items)
        assert (s.n_valid, s.n_test) == held_out_sizes(n, (0.8, 0.1, 0.1))
        assert s.items == loo[s.user_id].items  # the same time order; only the cut differs
        assert set(s.targets("test")).isdisjoint(s.history("test"))
        assert s.train + s.targets("valid") + s.targets("test") == s.items
    # ML-100K users have >= 20 ratings: everyone holds out at least 2 test items
    counts = ml100k.interactions.groupby("user_id").size()
    assert min(s.n_test for s in split) == 2 and sum(s.n_test for s in split) == int(np.floor(counts * 0.1 + 0.5).sum())


def test_full_lists_hold_every_held_out_item_and_other_kinds_refuse(tiny, tmp_path):
    split = by_ratio(tiny)
    cs = cands.build(split, "full", 20, 0, "test")
    by = cs.by_user()
    assert by["u1"].positives == ("19", "20") and by["u1"].more == ("20",)
    # every item of the split u1 never had (21..23 of u2's, 30 of u3's) and both targets
    assert by["u1"].candidates == ("19", "20", "21", "22", "23", "30")
    assert by["u2"].more == ()
    cs.save(tmp_path / "full.test.jsonl")
    assert cands.CandidateSet.load(tmp_path / "full.test.jsonl").lists == cs.lists
    with pytest.raises(ConfigError, match=r"sampled candidates hold one held-out item per list; a ratio split"):
        cands.build(split, "sampled", 5, 0, "test")
    bad = {"user_id": "u1", "positive": "19", "candidates": ["19", "21"], "more_positives": ["20"]}
    with pytest.raises(DataError, match=r"x:2: positive '20' is not among the candidates"):
        cands.list_record(bad, "x:2")
    with pytest.raises(DataError, match="more_positives"):
        cands.list_record({**bad, "more_positives": ["19"]}, "x:2")


def test_multi_item_metrics_by_hand():
    from llmrec.eval.metrics import ideal_dcg, user_metrics

    m = user_metrics([2.0, 5.0, 30.0])  # three held-out items, two in the top 5
    idcg5 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["NDCG@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(6)) / idcg5)
    assert m["Recall@5"] == pytest.approx(2 / 3) and m["Recall@10"] == pytest.approx(2 / 3)
    assert (m["HR@1"], m["HR@5"], m["MRR"]) == (0.0, 1.0, 0.5)
    assert user_metrics([1.0, 2.0])["NDCG@10"] == 1.0 == user_metrics([2.0, 1.0])["NDCG@5"]  # the ideal order
    assert ideal_dcg(np.array([1, 2, 20]), 10) == pytest.approx(
        [1.0, 1 + 1 / math.log2(3), sum(1 / math.log2(i + 1) for i in range(1, 11))])
    assert user_metrics([3.0])["Recall@5"] == user_metrics(3.0)["HR@5"] == 1.0  # one item: recall is HR
    assert user_metrics([3.0, None])["Recall@5"] == 0.5  # not in a generated list: never a hit


def test_full_valid_ndcg10_ranks_several_validation_items_like_the_metric(ml100k):
    """The vectorised early-stopping signal equals per-user ranking with `user_metrics`, on one and
    on several validation items per user."""
    from llmrec.baselines import TrainData, full_valid_ndcg10
    from llmrec.eval.metrics import expected_rank, user_metrics

    class Fixed:  # scores drawn once, coarse enough to make ties
        def __init__(self, n_users, n_items):
            self.s = np.random.default_rng(0).integers(0, 50, size=(n_users, n_items)).astype(np.float32)

        def score_all(self, users, stage="test"):
            return self.s[users]

    for split in (by_ratio(ml100k, "8:1:1"), leave_one_out(ml100k)):
        data = TrainData.from_split(split)
        model = Fixed(len(data.users), len(data.items))
        brute = []
        for u, user in enumerate(data.users):
            keep = np.setdiff1d(np.arange(len(data.items)), data.sequences[u])  # training items never compete
            s = model.s[u, keep]
            pos = list(keep).index
            brute.append(user_metrics([expected_rank(s, pos(i)) for i in data.valid_items(u)])["NDCG@10"])
            assert [data.items[i] for i in data.valid_items(u)] == list(split[user].targets("valid"))
        assert full_valid_ndcg10(model, data, batch=100) == pytest.approx(float(np.mean(brute)), rel=1e-9)


def test_prepare_baseline_and_rank_on_a_ratio_split(tiny, tmp_path):
    from llmrec.recipes import baseline, prepare, rank

    folder = tmp_path / "data"
    out = tmp_path / "out"
    lines: list[str] = []
    cfg = load_config(None, [f"out_dir={out}", f"data.path={folder}", 'data.dataset="t"', 'split.method="ratio"'])
    prepare.run(cfg, log=lines.append)
    assert {p.name for p in (out / "candidates").iterdir()} == {"full.test.jsonl", "full.valid.jsonl"}
    assert any("candidates.kinds ['sampled', 'pop'] hold one held-out item per list and are not built" in x
               for x in lines)
    assert any(x.startswith("ratio split 8:1:1: 3 users, 4 validation and 4 test items held out (1 skipped")
               for x in lines)

    res = baseline.run(load_config(None, [f"out_dir={out}", "baseline.name=pop", "baseline.candidates=['full.test']"]),
                       log=lambda *_: None)
    rows = {r["user_id"]: r for r in map(json.loads, (res.run_dirs[0] / "ranks.jsonl").read_text().splitlines())}
    # popularity over the training items only: of u1's candidates 19..23 and 30, only 19, 20, 21 were
    # trained on (once each, by u2); 22, 23 (u2's held-out items) and 30 (u3's) count 0
    r = rows["u1"]
    assert r["positives"] == ["19", "20"] and r["ranks"] == [2.0, 2.0] and r["rank"] == 2.0  # a 3-way tie at 1
    m = res.metrics["full.test"]
    assert m["users"] == 3 and m["Recall@10"] == pytest.approx(np.mean(
        [np.mean([x <= 10 for x in row.get("ranks", [row["rank"]])]) for row in rows.values()]))

    res = rank.run(load_config(str(out / "config.toml"), [
        "rank.users=2", "rank.template=title/next_item_v1", "rank.candidates=full.test",
        f"rank.run_dir={tmp_path / 'run'}"]), log=lambda *_: None)
    llm = [json.loads(x) for x in (tmp_path / "run" / "ranks.jsonl").read_text().splitlines()]
    u1 = next(x for x in llm if x["user_id"] == "u1")
    assert u1["positives"] == ["19", "20"] and len(u1["ranks"]) == 2 and u1["rank"] == min(u1["ranks"])
    assert 1 <= min(u1["ranks"]) <= 6 and res.metrics["users"] == 2
