"""Run directories: what every ranking run leaves behind.

    config.toml   the resolved config
    run.json      settings fingerprint (template hash, model, adapter, dtype, candidates file hash,
                  dataset hash), git commit, counts, timing
    ranks.jsonl   one line per user: ranked candidates, scores, rank of the held-out item
                  (or ranks.parquet/, one Parquet file per block, from `rank.output=parquet`)
    metrics.json  HR@K, NDCG@K, MRR over users with a known positive

`ranks.jsonl` is appended to as users finish, so a killed job loses at most the batch in flight
and a restart skips finished users. A job holds an exclusive lock on its directory (`.lock`,
released by the OS when the process dies) for its whole run, so two jobs can never interleave
their users; only the lock holder cuts a torn last line, and readers never modify the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Self

import numpy as np

from llmrec.errors import DataError
from llmrec.eval.metrics import expected_rank, metrics_of_rows

RANKS = "ranks.jsonl"
RANKS_PARQUET = "ranks.parquet"
RUN = "run.json"
LOCK = ".lock"


def git_commit() -> str:
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class RunLock:
    """Exclusive lock on a run directory for the duration of a job (`with RunLock(dir): ...`).

    A second job on the same directory fails at once, naming the holder's pid. The lock is an
    `flock` on `<run_dir>/.lock`, so it disappears with the process that held it (kill -9 included).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataError(f"{self.path.parent} is in use by another llmrec job (pid {holder}); wait for it to "
                            "finish or choose another run directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def check_run_dir(run_dir: Path) -> None:
    """Refuse a folder that holds something other than a run (e.g. `--run-dir .` in a project):
    a run writes config.toml and ranks.jsonl there and must never overwrite a user's files."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} is a file; choose a new or empty folder")
    if (run_dir / RUN).is_file():
        return
    other = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK)
    if other:
        raise DataError(f"{run_dir} is not an llmrec run directory (no {RUN}) and is not empty "
                        f"({', '.join(other[:5])}{', ...' if len(other) > 5 else ''}); choose a new or empty folder")


def _lines(path: Path) -> tuple[bytes, int]:
    """The file's complete lines and the length of a torn last line (0 when the file ends cleanly)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        return data[:cut], len(data) - cut
    return data, 0


def _schema():
    import pyarrow as pa

    return pa.schema([("user_id", pa.string()), ("positive", pa.string()), ("rank", pa.float64()),
                      ("candidates", pa.list_(pa.string())), ("scores", pa.list_(pa.float64())),
                      ("missed", pa.bool_()), ("dropped_history", pa.int64()), ("prompt_tokens", pa.int64())])


def encode_rows(rows: list[dict[str, Any]], output: str) -> bytes:
    """Rows as the bytes of one part file: JSON lines, or a Parquet file with a fixed schema."""
    if output == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), sink)
    return sink.getvalue().to_pybytes()


def _parquet_rows(folder: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = []
    for part in sorted(folder.glob("part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            if not row.get("missed"):  # as in ranks.jsonl: the key is there only when true
                row.pop("missed", None)
            for key in ("dropped_history", "prompt_tokens"):
                if row.get(key) is None:
                    row.pop(key, None)
            rows.append(row)
    return rows


def read_ranks(run_dir: Path) -> list[dict[str, Any]]:
    """Finished users of a run, read-only: a torn last line (a job killed mid-write, or one still
    writing) is left out but never cut here. A user written twice or a corrupt line is an error.
    A run written as Parquet (`ranks.parquet/`) is read the same way."""
    path = Path(run_dir) / RANKS
    if not path.is_file() and (Path(run_dir) / RANKS_PARQUET).is_dir():
        rows = _parquet_rows(Path(run_dir) / RANKS_PARQUET)
        _check_once(rows, Path(run_dir) / RANKS_PARQUET)
        return rows
    if not path.is_file():
        return []
    data, _ = _lines(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); this is not a ranks file llmrec wrote") from None
    rows, seen = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: corrupt line ({e.msg}); delete the run directory to start over") from None
        if not isinstance(row, dict) or "user_id" not in row:
            raise DataError(f"{path}:{n}: not a ranks row (expected an object with \"user_id\")")
        if row["user_id"] in seen:
            raise DataError(f"{path}:{n}: user {row['user_id']!r} is written twice (also line {seen[row['user_id']]}); "
                            "the file mixes two jobs: delete the run directory and rank again")
        seen[row["user_id"]] = n
        rows.append(row)
    return rows


def cut_torn_line(run_dir: Path, lock: RunLock) -> int:
    """Drop a torn last line left by a killed job; only the lock holder may (it alone writes)."""
    assert lock._fd is not None, "cut_torn_line needs the run directory's lock"
    path = Path(run_dir) / RANKS
    if not path.is_file():
        return 0
    data, torn = _lines(path)
    if torn:
        with open(path, "r+b") as f:
            f.truncate(len(data))
    return torn


def append_ranks(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    with open(Path(run_dir) / RANKS, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())


def rank_row(user_id: str, candidates: list[str], scores: np.ndarray, positive: str | None, top_k: int = 0,
             missed: bool = False, **extra: Any) -> dict[str, Any]:
    """One `ranks.jsonl` row, the same for LLM and classic runs: candidates best first with their
    scores (the first `top_k`, or all), and the held-out item's expected rank among all of them."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if top_k:
        order = order[:top_k]
    rank = expected_rank(scores, candidates.index(positive)) if positive is not None else None
    row = {"user_id": user_id, "positive": positive, "rank": rank,
           "candidates": [candidates[k] for k in order], "scores": [round(float(scores[k]), 6) for k in order],
           **extra}
    if missed:
        row["missed"] = True
    return row


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def load_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN
    if not path.is_file():
        raise DataError(f"{run_dir} is not a run directory (no {RUN})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None


def evaluate(run_dir: Path) -> dict[str, float]:
    """Recompute `metrics.json` from `ranks.jsonl`, which is only read. A missing or empty file is an
    error and leaves the existing `metrics.json` as it was."""
    run_dir = Path(run_dir)
    load_run(run_dir)
    rows = read_ranks(run_dir)
    if not rows:
        raise DataError(f"{run_dir / RANKS}: missing or empty, nothing to evaluate (metrics.json left as it was)")
    metrics = metrics_of_rows(rows)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def _check_once(rows: list[dict[str, Any]], where: Path) -> None:
    seen: set[str] = set()
    for r in rows:
        if r["user_id"] in seen:
            raise DataError(f"{where}: user {r['user_id']!r} is written twice; the folder mixes two jobs")
        seen.add(r["user_id"])


def ranks_sha256(run_dir: Path) -> str:
    """Digest of a run's ranks: `ranks.jsonl`, or the part files of `ranks.parquet/` in order."""
    path, folder = Path(run_dir) / RANKS, Path(run_dir) / RANKS_PARQUET
    files = sorted(folder.glob("part-*.parquet")) if not path.is_file() and folder.is_dir() else [path]
    h = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class StopOnSignal:
    """Ctrl-C / SIGTERM during a ranking job: the job finishes and saves the current batch (block),
    then stops; a second signal stops at once. Installed after the backend (or Ray) starts, so an
    engine that handles SIGINT itself (vLLM, Ray) cannot swallow it; outside the main thread it
    does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Self:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)
