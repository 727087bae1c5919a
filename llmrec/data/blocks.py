"""A ranking job's input read in blocks of users, so that no process ever holds all of them.

`plan` streams the input once (a candidate file, a JSONL of histories or a Parquet file): it
hashes the file, checks that every record has a user id and that no user appears twice, and cuts
the records into blocks of `block_users`. A block is a byte range of a JSONL file or a row range
of one Parquet row group, named by its record range, so the same input always gives the same
blocks: a resumed job knows which are finished by name. `read_block` parses one block into a
`Job` with exactly the checks (and `file:line` errors) of the single-process reader.

Memory: the plan holds one small entry per block and 8 bytes per user (a hash, for the
duplicate check); a block holds its own users only.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data import queries
from llmrec.data.candidates import list_record, read_meta
from llmrec.data.dataset import Dataset
from llmrec.data.split import Split
from llmrec.errors import DataError

KINDS = ("candidates", "jsonl", "parquet")


@dataclass(frozen=True)
class Block:
    """Records [start, stop) of the input: bytes [offset, end) from line `line` of a JSONL file, or
    rows [offset, end) of Parquet row group `group`."""

    start: int
    stop: int
    offset: int
    end: int
    line: int = 0
    group: int = -1

    @property
    def name(self) -> str:
        return f"{self.start:010d}-{self.stop:010d}"


@dataclass
class Source:
    """A planned input: what it is, its digest, its blocks and (candidate files) its stage."""

    path: str
    kind: str
    sha256: str
    records: int
    blocks: list[Block] = field(default_factory=list)
    stage: str = "test"
    meta: dict[str, Any] = field(default_factory=dict)


def kind_of(path: Path, candidates: bool) -> str:
    if candidates:
        return "candidates"
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "jsonl"


def _user_hash(user_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "little")


def plan(path: Path, kind: str, block_users: int, limit: int = 0) -> Source:
    """Stream `path` once: digest, blocks of `block_users` records (the first `limit` records when
    `limit` > 0), and every user id checked for type and repeats (an error names both lines)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"rank.input: file not found: {path}" if kind != "candidates"
                        else f"candidate file not found: {path} (run `llmrec prepare`)")
    if block_users < 1:
        raise DataError(f"block_users must be >= 1; got {block_users}")
    src = Source(str(path), kind, "", 0)
    hashes = array("Q")
    if kind == "parquet":
        _plan_parquet(path, src, block_users, limit, hashes)
    else:
        _plan_jsonl(path, src, block_users, limit, hashes)
    _check_repeats(src, hashes)
    return src


def _plan_jsonl(path: Path, src: Source, block_users: int, limit: int, hashes: array) -> None:
    digest = hashlib.sha256()
    first = 1
    if src.kind == "candidates":
        src.meta = read_meta(path)
        src.stage = src.meta["stage"]
        first = 2
    offset, n_line, records, last_end = 0, 0, 0, 0
    block_start: tuple[int, int] | None = None  # (byte offset, line) of the open block's first record
    with open(path, "rb") as f:
        for raw in f:
            n_line += 1
            here = offset
            offset += len(raw)
            digest.update(raw)
            if n_line < first or not raw.strip() or (limit and records >= limit):
                continue
            where = f"{path}:{n_line}"
            try:
                line = raw.decode("utf-8-sig" if n_line == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not UTF-8 text (byte {e.start})") from None
            rec = queries.parse_line(line, where)
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object, got {line[:80]!r}")
            hashes.append(_user_hash(queries.record_user(rec, where)))
            if block_start is None:
                block_start = (here, n_line)
            records += 1
            last_end = offset
            if records % block_users == 0:
                src.blocks.append(Block(records - block_users, records, block_start[0], offset, block_start[1]))
                block_start = None
    if block_start is not None:
        start = records - records % block_users
        src.blocks.append(Block(start, records, block_start[0], last_end, block_start[1]))
    src.sha256, src.records = digest.hexdigest(), records


def _plan_parquet(path: Path, src: Source, block_users: int, limit: int, hashes: array) -> None:
    import pyarrow.parquet as pq

    from llmrec.assets import sha256_file

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    missing = {"user_id", "history", "candidates"} - set(pf.schema_arrow.names)
    if missing:
        raise DataError(f"{path}: Parquet input needs columns user_id, history and candidates; "
                        f"missing {sorted(missing)}")
    src.sha256 = sha256_file(path)
    records = 0
    for g in range(pf.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        if limit:
            rows = min(rows, limit - records)
        if rows <= 0:
            break
        ids = pf.read_row_group(g, columns=["user_id"]).column("user_id").to_pylist()[:rows]
        for k, user_id in enumerate(ids):
            hashes.append(_user_hash(queries.record_user({"user_id": user_id}, f"{path}: row {records + k + 1}")))
        for a in range(0, rows, block_users):
            b = min(a + block_users, rows)
            src.blocks.append(Block(records + a, records + b, a, b, group=g))
        records += rows
    src.records = records


def _check_repeats(src: Source, hashes: array) -> None:
    """A repeated user id is an error naming it and both records (a second pass runs only when
    two hashes collide, to tell a real repeat from a hash collision)."""
    h = np.frombuffer(hashes, dtype=np.uint64) if len(hashes) else np.zeros(0, np.uint64)
    s = np.sort(h)
    twice = set(s[1:][s[1:] == s[:-1]].tolist())
    if not twice:
        return
    seen: dict[str, str] = {}
    for where, rec in _records(src, src.blocks):
        user_id = queries.record_user(rec, where)
        if _user_hash(user_id) in twice:
            if user_id in seen:
                raise DataError(f"{where}: user {user_id!r} appears twice (also {seen[user_id]}); each user "
                                "must appear once in a ranking input")
            seen[user_id] = where


def _records(src: Source, blocks: list[Block]) -> Iterator[tuple[str, Any]]:
    for block in blocks:
        yield from read_records(src, block)


_GROUP_CACHE: dict[tuple[str, int], Any] = {}


def read_records(src: Source, block: Block) -> Iterator[tuple[str, Any]]:
    """(where, record) for each record of `block`: parsed JSON objects or Parquet rows as dicts."""
    if src.kind == "parquet":
        key = (src.path, block.group)
        if key not in _GROUP_CACHE:  # consecutive blocks of one row group read it once
            import pyarrow.parquet as pq

            _GROUP_CACHE.clear()
            _GROUP_CACHE[key] = pq.ParquetFile(src.path).read_row_group(block.group)
        rows = _GROUP_CACHE[key].slice(block.offset, block.end - block.offset).to_pylist()
        for k, row in enumerate(rows):
            yield f"{src.path}: row {block.start + k + 1}", row
        return
    with open(src.path, "rb") as f:
        f.seek(block.offset)
        data = f.read(block.end - block.offset)
    n_line = block.line
    for raw in data.splitlines():
        if raw.strip():
            where = f"{src.path}:{n_line}"
            try:
                line = raw.decode("utf-8-sig" if n_line == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not UTF-8 text (byte {e.start})") from None
            yield where, queries.parse_line(line, where)
        n_line += 1


def read_block(src: Source, block: Block, ds: Dataset, split: Split | None, history_len: int,
               on_unknown: str) -> queries.Job:
    """One block's users as a `Job`, checked exactly as the single-process reader checks them."""
    job = queries.Job([], {}, src.path, src.sha256, stage=src.stage)
    for where, rec in read_records(src, block):
        if src.kind == "candidates":
            if split is None:
                raise ValueError("a candidate file's block needs the split")
            c = list_record(rec, where)
            queries.candidate_record(job, split, ds, history_len, on_unknown, c, where)
        else:
            queries.input_record(job, ds, history_len, on_unknown, rec, where)
    return job



def read_all(src: Source, ds: Dataset, split: Split | None, history_len: int, on_unknown: str) -> queries.Job:
    """Every block of `src` as one `Job` (the single-process path's reader for Parquet input)."""
    job = queries.Job([], {}, src.path, src.sha256, stage=src.stage)
    for block in src.blocks:
        part = read_block(src, block, ds, split, history_len, on_unknown)
        job.queries += part.queries
        job.positives.update(part.positives)
        job.more.update(part.more)
        job.missed |= part.missed
        for what, n in part.skipped.items():
            job.count(what, n)
    return job
