"""`rank --input` JSONL is untrusted: every malformed record is a one-line error naming file:line."""

import json

import pytest

from llmrec.data.queries import from_input
from llmrec.errors import DataError


def write(tmp_path, *records):
    p = tmp_path / "users.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return p


GOOD = {"user_id": "a", "history": ["1", {"item_id": "2", "rating": 5}], "candidates": ["50", "181", "9"],
        "positive": "50"}


def test_good_input(tmp_path, ml100k):
    job = from_input(write(tmp_path, GOOD, {**GOOD, "user_id": 7}), ml100k, history_len=20)
    assert [q.user_id for q in job.queries] == ["a", "7"] and job.positives["a"] == "50"
    assert [e.item.id for e in job.queries[0].history] == ["1", "2"] and job.queries[0].history[1].rating == 5.0


@pytest.mark.parametrize("record, message", [
    ({**GOOD, "candidates": ["50", "181", "50"]}, r"users.jsonl:1: user 'a': candidate '50' is listed twice"),
    ({**GOOD, "history": "12"}, r"users.jsonl:1: 'history' must be a JSON list, got str"),
    ({**GOOD, "candidates": "50"}, r"users.jsonl:1: 'candidates' must be a JSON list, got str"),
    ({**GOOD, "user_id": None}, r"users.jsonl:1: \"user_id\" must be a non-empty string or integer, got None"),
    ({**GOOD, "history": [{"item_id": "1", "rating": "five"}]},
     r"users.jsonl:1: user 'a' rating: expected a finite number, got 'five'"),
    ({**GOOD, "history": [{"item_id": "1", "timestamp": "NaN"}]}, r"users.jsonl:1: user 'a' timestamp"),
    ({**GOOD, "candidates": [["50"]]}, r"users.jsonl:1: user 'a' candidate: expected an item id"),
    ({"user_id": "a", "candidates": ["1"]}, r"users.jsonl:1: expected an object with \"user_id\", \"history\""),
    ("[1, 2]", r"users.jsonl:1: expected an object"),
    ("{not json", r"users.jsonl:1: invalid JSON at column 2"),
])
def test_malformed_records_are_one_line_errors(tmp_path, ml100k, record, message):
    with pytest.raises(DataError, match=message):
        from_input(write(tmp_path, record), ml100k, history_len=20)


def test_duplicate_positive_would_have_been_ranked_against_itself(tmp_path, ml100k):
    # Before: the positive's copy counted as a negative; now the file is refused.
    p = write(tmp_path, GOOD, {**GOOD, "user_id": "b", "candidates": ["9", "50", "50"]})
    with pytest.raises(DataError, match=r"users.jsonl:2: user 'b': candidate '50' is listed twice"):
        from_input(p, ml100k, history_len=20)


def test_bom_and_non_utf8(tmp_path, ml100k):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert [q.user_id for q in from_input(p, ml100k, history_len=20).queries] == ["a"]
    p.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(DataError, match="not UTF-8"):
        from_input(p, ml100k, history_len=20)


@pytest.mark.parametrize("ts, shown", [(1e12, r"1e\+12"), (-1e15, r"-1e\+15")], ids=["ms", "before-year-1"])
def test_a_timestamp_without_a_date_is_refused_when_read(tmp_path, ml100k, ts, shown):
    # Before: read as is, then an OverflowError/OSError traceback when a prompt showed its date.
    good = {"item_id": "1", "timestamp": 881250949}
    p = write(tmp_path, GOOD, {**GOOD, "user_id": "U", "history": [good, {"item_id": "2", "timestamp": ts}]})
    with pytest.raises(DataError, match=rf"users.jsonl:2: user 'U' timestamp: {shown} is outside the dates "
                                        r"a timestamp can name \(years 1-9999"):
        from_input(p, ml100k, history_len=20)
    job = from_input(write(tmp_path, {**GOOD, "history": [good]}), ml100k, history_len=20)
    assert job.queries[0].history[0].timestamp == 881250949.0
