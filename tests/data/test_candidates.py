import numpy as np
import pytest

from llmrec.data import candidates as cands
from llmrec.data.candidates import CandidateSet
from llmrec.data.split import train_item_counts
from llmrec.errors import DataError


@pytest.mark.parametrize("kind", ["sampled", "pop"])
@pytest.mark.parametrize("stage", ["test", "valid"])
def test_sampled_lists_are_valid(ml100k_split, kind, stage):
    cs = cands.build(ml100k_split, kind, 20, 0, stage)
    assert len(cs.lists) == 943
    positions = []
    for c in cs.lists:
        s = ml100k_split[c.user_id]
        assert len(c.candidates) == 20 and len(set(c.candidates)) == 20
        assert c.positive == s.target(stage) and c.candidates.count(c.positive) == 1
        negatives = set(c.candidates) - {c.positive}
        assert not negatives & set(s.items)  # never an item the user interacted with
        positions.append(c.candidates.index(c.positive))
    # The positive's position is shuffled, not fixed: every slot is used.
    assert len(set(positions)) == 20


def test_full_lists_are_all_unseen_plus_positive(ml100k_split):
    cs = cands.build(ml100k_split, "full", 20, 0, "test")
    universe = {i for s in ml100k_split for i in s.items}
    for c in cs.lists[:50]:
        s = ml100k_split[c.user_id]
        assert set(c.candidates) == (universe - set(s.items)) | {s.test}


def test_same_seed_same_file_other_seed_differs(tmp_path, ml100k_split):
    a, b, c = (tmp_path / n for n in "abc")
    cands.build(ml100k_split, "sampled", 20, 3, "test").save(a)
    cands.build(ml100k_split, "sampled", 20, 3, "test").save(b)
    cands.build(ml100k_split, "sampled", 20, 4, "test").save(c)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    loaded = CandidateSet.load(a)
    assert loaded.seed == 3 and loaded.label == "sampled-20" and loaded.dataset_hash == ml100k_split.dataset_hash
    assert loaded.lists == cands.build(ml100k_split, "sampled", 20, 3, "test").lists


def test_pop_negatives_are_more_popular(ml100k_split):
    universe = sorted({i for s in ml100k_split for i in s.items})
    counts = dict(zip(universe, train_item_counts(ml100k_split, universe)))

    def mean_neg_pop(kind):
        cs = cands.build(ml100k_split, kind, 20, 0, "test")
        return np.mean([counts[i] for c in cs.lists for i in c.candidates if i != c.positive])

    assert mean_neg_pop("pop") > 2 * mean_neg_pop("sampled")


def test_load_rejects_bad_files(tmp_path, ml100k_split):
    p = tmp_path / "x.jsonl"
    p.write_text('{"user_id": "1"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:1: expected a \{\"meta\": ...\} header"):
        CandidateSet.load(p)
    meta = '{"meta": {"kind": "sampled", "n": 3, "seed": 0, "stage": "test", "dataset_hash": "h"}}\n'
    p.write_text(meta + '{"user_id": "1", "positive": "9", "candidates": ["1", "2", "3"]}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: positive '9' is not among the candidates"):
        CandidateSet.load(p)
    p.write_text(meta + '{"user_id": "1", "positive": "1", "candidates": ["1", "1", "3"]}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: user '1' has duplicate candidates"):
        CandidateSet.load(p)
    p.write_text(meta + '{"user_id": "1", "positive": "1", "candidates": ["1"]}\n'
                        '{"user_id": "1", "positive": "1", "candidates": ["1"]}\n')
    with pytest.raises(DataError, match=r"x.jsonl:3: user '1' appears twice"):
        CandidateSet.load(p)
    p.write_text(meta)
    with pytest.raises(DataError, match="was built on dataset h"):
        CandidateSet.load(p).check_dataset(ml100k_split.dataset_hash, p)


def test_window_negatives_exclude_only_the_history_window(ml100k_split):
    """LLaRA's protocol: items the user saw before the prompt's window may be negatives."""
    cs = cands.build(ml100k_split, "window", 20, 0, "test", window=10)
    assert cs.label == "window-20" and len(cs.lists) == len(ml100k_split)
    earlier_seen = 0
    for c in cs.lists:
        s = ml100k_split[c.user_id]
        window = set(s.history("test", 10))
        negatives = set(c.candidates) - {c.positive}
        assert c.positive == s.test and len(c.candidates) == 20 and not negatives & window
        earlier_seen += len(negatives & set(s.items))
    assert earlier_seen > 0  # would be 0 if every seen item were excluded, as in sampled-N


def test_bm25_negatives_match_the_history_text(ml100k, ml100k_split):
    texts = {i: " ".join([it.title, *it.genres]) for i, it in ml100k.items.items()}
    bm = cands.build(ml100k_split, "bm25", 20, 0, "test", texts, window=20)
    uni = cands.build(ml100k_split, "sampled", 20, 0, "test")
    assert bm.label == "bm25-20" and bm.meta()["filled"] < len(ml100k_split)  # almost every list is all matches

    def overlap(cs):  # mean share of a list's negatives sharing a genre with the last history item
        shares = []
        for c in cs.lists:
            s = ml100k_split[c.user_id]
            assert c.positive == s.test and not (set(c.candidates) - {c.positive}) & set(s.items)
            last = set(ml100k.items[s.history("test", 1)[0]].genres)
            negs = [i for i in c.candidates if i != c.positive]
            shares.append(np.mean([bool(set(ml100k.items[i].genres) & last) for i in negs]))
        return float(np.mean(shares))

    assert overlap(bm) > overlap(uni) + 0.1  # harder, text-alike negatives
    open_lists = cands.build(ml100k_split, "bm25", 20, 0, "test", texts, window=20, include_target=False)
    assert open_lists.label == "bm25-20-notarget"
    found = [c for c in open_lists.lists if c.positive is not None]
    assert 0 < len(found) < len(open_lists.lists)  # the target is there only when BM25 retrieved it
    assert all(c.missed == ml100k_split[c.user_id].test for c in open_lists.lists if c.positive is None)
    assert all(len(c.candidates) == 20 for c in open_lists.lists)
    with pytest.raises(DataError, match="bm25 candidates need every item's text"):
        cands.build(ml100k_split, "bm25", 20, 0, "test", {}, window=20)
