from llmrec.config import DataConfig
from llmrec.data.loaders import load_recbole
from llmrec.data.split import Split, leave_one_out
from tests.conftest import write_recbole

ITEMS = [f"{i}\tMovie {i}\t1990\tDrama" for i in range(1, 10)]


def test_invariants_on_ml100k(ml100k, ml100k_split):
    split = ml100k_split
    assert len(split) == 943 and split.skipped_users == 0
    total = 0
    for s in split:
        assert s.test not in s.history("test")  # ML-100K has no repeated (user, item) pairs
        assert s.history("test") == (*s.train, s.valid)
        assert s.history("valid") == s.train
        assert list(s.timestamps) == sorted(s.timestamps)
        total += len(s.items)
    assert total == ml100k.n_interactions  # every interaction is in exactly one part


def test_tie_break_is_file_order_not_item_id(tmp_path):
    # Items 9, 2, 5 are rated in the same second; file order must decide, not the item id.
    rows = ["u1\t9\t5\t100", "u1\t2\t4\t100", "u1\t1\t3\t50", "u1\t5\t3\t100", "u2\t1\t3\t1", "u2\t2\t3\t2"]
    ds = load_recbole(write_recbole(tmp_path, "t", rows, ITEMS), "t", DataConfig())
    split = leave_one_out(ds)
    assert split["u1"].items == ("1", "9", "2", "5")
    assert (split["u1"].valid, split["u1"].test) == ("2", "5")
    assert split.skipped_users == 1  # u2 has only two interactions
    assert leave_one_out(ds).users == split.users  # stable


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
