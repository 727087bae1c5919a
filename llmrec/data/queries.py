"""The users a ranking job scores: from a prepared candidate file or from a JSONL of histories.

Input files are untrusted: every record is checked (types, known ids, duplicates) and a problem is
a `DataError` naming `file:line`, the user and the value, or a documented policy applies:
unknown item ids are an error unless `on_unknown = "skip"` (then dropped and counted); users
with an empty history or no candidates are skipped and counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.assets import sha256_file
from llmrec.data.candidates import CandidateList, CandidateSet
from llmrec.data.dataset import Dataset, Interaction, timestamp_problem
from llmrec.data.split import Split
from llmrec.errors import DataError


@dataclass(frozen=True)
class UserQuery:
    """One user to rank: history (oldest first) and candidate item ids."""

    user_id: str
    history: list[Interaction]
    candidates: list[str]


@dataclass
class Job:
    """Users to rank, in order, with what was skipped and why."""

    queries: list[UserQuery]
    positives: dict[str, str | None]
    source: str  # the candidates or input file
    source_sha256: str
    skipped: dict[str, int] = field(default_factory=dict)
    missed: set[str] = field(default_factory=set)  # users whose held-out item a retriever missed
    more: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ratio split: each user's other held-out items
    stage: str = "test"  # the target the histories lead to (a candidate file's stage; "test" for an input file)

    def count(self, what: str, n: int = 1) -> None:
        self.skipped[what] = self.skipped.get(what, 0) + n


def _add(job: Job, ds: Dataset, on_unknown: str, user_id: str, history: list[Interaction],
         candidates: list[str], positive: str | None, where: str) -> None:
    """Apply the input policies: unknown ids (error or drop), empty history / candidates (skip)."""
    if len(set(candidates)) != len(candidates):
        dup = next(c for c in candidates if candidates.count(c) > 1)
        raise DataError(f"{where}: user {user_id!r}: candidate {dup!r} is listed twice; each candidate must "
                        "appear once (a repeated positive would be ranked against itself)")
    unknown = [i for i in candidates if i not in ds.items]
    if unknown:
        if on_unknown == "error":
            raise DataError(f"{where}: user {user_id!r}: unknown item id {unknown[0]!r} among the candidates "
                            f"({len(unknown)} unknown; set rank.on_unknown=skip to drop them)")
        job.count("unknown_candidate_ids", len(unknown))
        candidates = [i for i in candidates if i in ds.items]
        if positive is not None and positive not in ds.items:
            positive = None
    if positive is not None and positive not in candidates:
        raise DataError(f"{where}: user {user_id!r}: positive {positive!r} is not among the candidates")
    if not history:
        job.count("empty_history")
        return
    if not candidates:
        job.count("empty_candidates")
        return
    job.queries.append(UserQuery(user_id, history, candidates))
    job.positives[user_id] = positive


def from_candidates(path: Path, split: Split, ds: Dataset, history_len: int, on_unknown: str = "error") -> Job:
    """Every user of a prepared candidate file, with their history for the file's stage."""
    cs = CandidateSet.load(path)
    cs.check_dataset(split.dataset_hash, path)
    job = Job([], {}, str(path), sha256_file(path), stage=cs.stage)
    for c in cs.lists:
        candidate_record(job, split, ds, history_len, on_unknown, c, str(path))
    return job


def _number(value: Any, where: str, what: str) -> float:
    """A finite number (a JSON number or numeric string), or NaN when absent."""
    if value is None:
        return math.nan
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if math.isnan(x) or math.isinf(x):
        raise DataError(f"{where}: {what}: expected a finite number, got {value!r}")
    return x


def _timestamp(value: Any, where: str, what: str) -> float:
    """A history timestamp (NaN when absent) that a template can show as a date: one outside
    datetime's range would fail only later, when a prompt is rendered."""
    x = _number(value, where, what)
    problem = "" if math.isnan(x) else timestamp_problem(x)
    if problem:
        raise DataError(f"{where}: {what}: {problem}")
    return x


def _ids(value: Any, where: str, key: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"{where}: {key!r} must be a JSON list, got {type(value).__name__} {value!r:.60}")
    return value


def _item_id(value: Any, where: str, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise DataError(f"{where}: {what}: expected an item id (string or integer), got {value!r}")
    return str(value)


def input_record(job: Job, ds: Dataset, history_len: int, on_unknown: str, rec: Any, where: str) -> str:
    """Check one {"user_id", "history", "candidates", "positive"?} record, add its user to `job` (or
    count the skip) and return the user id; `where` names the file and line (or row) in errors."""
    if not isinstance(rec, dict) or not {"user_id", "history", "candidates"} <= rec.keys():
        raise DataError(f"{where}: expected an object with \"user_id\", \"history\" and \"candidates\", "
                        f"got {json.dumps(rec, default=str)[:80]!r}")
    user_id = record_user(rec, where)
    candidates = [_item_id(c, where, f"user {user_id!r} candidate") for c in _ids(rec["candidates"], where, "candidates")]
    history: list[Interaction] = []
    for h in _ids(rec["history"], where, "history")[-history_len:]:
        h = h if isinstance(h, dict) else {"item_id": h}
        iid = _item_id(h.get("item_id"), where, f"user {user_id!r} history item_id")
        if iid not in ds.items:
            if on_unknown == "error":
                raise DataError(f"{where}: user {user_id!r}: unknown item id {iid!r} in the history "
                                "(set rank.on_unknown=skip to drop unknown ids)")
            job.count("unknown_history_ids")
            continue
        history.append(Interaction(ds.items[iid], _number(h.get("rating"), where, f"user {user_id!r} rating"),
                                   _timestamp(h.get("timestamp"), where, f"user {user_id!r} timestamp")))
    positive = rec.get("positive")
    positive = None if positive is None else _item_id(positive, where, f"user {user_id!r} positive")
    _add(job, ds, on_unknown, user_id, history, candidates, positive, where)
    return user_id


def record_user(rec: dict[str, Any], where: str) -> str:
    """A record's user id as a string; anything but a non-empty string or integer is an error."""
    user_id = rec.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
        raise DataError(f"{where}: \"user_id\" must be a non-empty string or integer, got {user_id!r}")
    return str(user_id)


def parse_line(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON at column {e.colno}: {e.msg}") from None


def candidate_record(job: Job, split: Split, ds: Dataset, history_len: int, on_unknown: str, c: CandidateList,
                     where: str) -> None:
    """Add one candidate-file user to `job`, with the history that leads to the file's stage."""
    history = split[c.user_id].events(ds, job.stage, history_len)
    _add(job, ds, on_unknown, c.user_id, history, list(c.candidates), c.positive, where)
    if c.more:
        job.more[c.user_id] = c.more
    if c.missed is not None:
        job.missed.add(c.user_id)


def from_input(path: Path, ds: Dataset, history_len: int, on_unknown: str = "error") -> Job:
    """JSONL lines {"user_id", "history": [id | {"item_id", "rating"?, "timestamp"?}], "candidates", "positive"?}."""
    if not path.is_file():
        raise DataError(f"rank.input: file not found: {path}")
    job = Job([], {}, str(path), sha256_file(path))
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        rec = parse_line(line, where)
        if isinstance(rec, dict) and rec.get("user_id") is not None and record_user(rec, where) in seen:
            raise DataError(f"{where}: user {record_user(rec, where)!r} appears twice")
        seen.add(input_record(job, ds, history_len, on_unknown, rec, where))
    return job
