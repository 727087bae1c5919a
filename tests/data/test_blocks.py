"""The ranking input in blocks: boundaries, line numbers, repeats, Parquet, and the same users as
the single-process reader."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmrec.assets import sha256_file
from llmrec.data import blocks
from llmrec.data.queries import from_input
from llmrec.errors import DataError


def record(user, history=("1", "2"), candidates=("50", "181", "9"), **extra):
    return {"user_id": user, "history": list(history), "candidates": list(candidates), **extra}


def write_jsonl(path, records, blank_after=()):
    with open(path, "w") as f:
        for k, r in enumerate(records):
            f.write(json.dumps(r) + "\n")
            if k in blank_after:
                f.write("\n")
    return path


def test_jsonl_blocks_cover_each_record_once_with_line_numbers(tmp_path, ml100k):
    recs = [record(f"u{k}", positive="50") for k in range(7)]
    path = write_jsonl(tmp_path / "users.jsonl", recs, blank_after={2})  # a blank line 4 is skipped
    src = blocks.plan(path, "jsonl", 3)
    assert src.records == 7 and src.sha256 == sha256_file(path)
    assert [(b.start, b.stop, b.line) for b in src.blocks] == [(0, 3, 1), (3, 6, 5), (6, 7, 8)]
    assert src.blocks[0].name == "0000000000-0000000003"
    users = [q.user_id for b in src.blocks for q in blocks.read_block(src, b, ml100k, None, 20, "error").queries]
    assert users == [f"u{k}" for k in range(7)]
    whole = from_input(path, ml100k, 20)
    assert users == [q.user_id for q in whole.queries]
    # The first N records only, cut inside a block.
    assert [(b.start, b.stop) for b in blocks.plan(path, "jsonl", 3, limit=4).blocks] == [(0, 3), (3, 4)]


def test_a_block_reports_bad_records_by_file_and_line(tmp_path, ml100k):
    recs = [record("a"), record("b"), record("c", candidates=["50", "no-such-item"])]
    path = write_jsonl(tmp_path / "users.jsonl", recs)
    src = blocks.plan(path, "jsonl", 2)
    assert len(blocks.read_block(src, src.blocks[0], ml100k, None, 20, "error").queries) == 2
    with pytest.raises(DataError, match=r"users.jsonl:3: user 'c': unknown item id 'no-such-item'"):
        blocks.read_block(src, src.blocks[1], ml100k, None, 20, "error")
    skipped = blocks.read_block(src, src.blocks[1], ml100k, None, 20, "skip")
    assert skipped.skipped == {"unknown_candidate_ids": 1} and skipped.queries[0].candidates == ["50"]


def test_plan_refuses_repeated_users_and_bad_lines(tmp_path):
    path = write_jsonl(tmp_path / "users.jsonl", [record("a"), record("b"), record("a")])
    with pytest.raises(DataError, match=r"users.jsonl:3: user 'a' appears twice \(also .*users.jsonl:1\)"):
        blocks.plan(path, "jsonl", 2)
    (tmp_path / "bad.jsonl").write_text(json.dumps(record("a")) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON at column 2"):
        blocks.plan(tmp_path / "bad.jsonl", "jsonl", 2)
    (tmp_path / "noid.jsonl").write_text(json.dumps({"history": []}) + "\n")
    with pytest.raises(DataError, match=r"noid.jsonl:1: \"user_id\" must be a non-empty string or integer"):
        blocks.plan(tmp_path / "noid.jsonl", "jsonl", 2)
    with pytest.raises(DataError, match="rank.input: file not found"):
        blocks.plan(tmp_path / "missing.jsonl", "jsonl", 2)


def test_candidate_file_blocks_read_the_split_histories(prepared, ml100k):
    from llmrec.data.prepared import open_prepared

    prep = open_prepared(prepared, log=lambda *_: None)
    path = prep.candidates_path("sampled-20.test")
    src = blocks.plan(path, "candidates", 100, limit=250)
    assert src.stage == "test" and src.meta["kind"] == "sampled" and src.records == 250
    assert [b.line for b in src.blocks] == [2, 102, 202]  # line 1 is the header
    ds, split = prep.dataset(lambda *_: None), prep.split()
    job = prep.job(ds)
    got = [q for b in src.blocks for q in blocks.read_block(src, b, ds, split, 5, "error").queries]
    assert [(q.user_id, q.candidates, q.history) for q in got] == \
        [(q.user_id, q.candidates, q.history) for q in job.queries[:250]]


def test_parquet_input_in_row_group_blocks(tmp_path, ml100k):
    recs = [record(str(k), history=["1", "2", "3"][: 1 + k % 3], positive="181") for k in range(10)]
    table = pa.Table.from_pylist(recs)
    pq.write_table(table, tmp_path / "users.parquet", row_group_size=4)
    src = blocks.plan(tmp_path / "users.parquet", "parquet", 3)
    assert [(b.group, b.start, b.stop) for b in src.blocks] == [(0, 0, 3), (0, 3, 4), (1, 4, 7), (1, 7, 8),
                                                                 (2, 8, 10)]
    got = [q for b in src.blocks for q in blocks.read_block(src, b, ml100k, None, 20, "error").queries]
    want = from_input(write_jsonl(tmp_path / "users.jsonl", recs), ml100k, 20).queries
    assert got == want
    pq.write_table(pa.Table.from_pylist([record("a"), record("a")]), tmp_path / "twice.parquet")
    with pytest.raises(DataError, match=r"twice.parquet: row 2: user 'a' appears twice \(also .*row 1\)"):
        blocks.plan(tmp_path / "twice.parquet", "parquet", 3)
    pq.write_table(pa.table({"user_id": ["a"]}), tmp_path / "narrow.parquet")
    with pytest.raises(DataError, match=r"missing \['candidates', 'history'\]"):
        blocks.plan(tmp_path / "narrow.parquet", "parquet", 3)
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="fake.parquet: not a readable Parquet file"):
        blocks.plan(tmp_path / "fake.parquet", "parquet", 3)


def test_parquet_rows_refuse_a_timestamp_without_a_date(tmp_path, ml100k):
    # Parquet rows go through the JSONL reader's per-record checks, timestamps included.
    ok = {"item_id": "1", "timestamp": 881250949.0}
    recs = [record("a", history=[ok]), record("U", history=[ok, {"item_id": "2", "timestamp": 1e12}])]
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "users.parquet")
    src = blocks.plan(tmp_path / "users.parquet", "parquet", 5)
    with pytest.raises(DataError, match=r"users.parquet: row 2: user 'U' timestamp: 1e\+12 is outside the dates"):
        blocks.read_block(src, src.blocks[0], ml100k, None, 20, "error")
