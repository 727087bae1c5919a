"""Run directories: what every run leaves behind, and the one writer that leaves it.

    config.toml   the resolved config
    run.json      settings fingerprint (template hash, model, adapter, dtype, candidates file hash,
                  dataset hash), git commit, the command that recreates the run, counts, timing
    ranks.jsonl   one line per user: ranked candidates, scores, rank of the held-out item
                  (or ranks.parquet/, one Parquet file per block, from `rank.ray.output=parquet`)
    metrics.json  HR@K, NDCG@K, MRR over users with a known positive

`RunWriter` owns the life cycle for every kind of run (a ranking job on either engine, a
baseline, a blend): lock -> engine / resume check -> start record -> rows -> metrics + run.json.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from llmrec.errors import ConfigError, DataError
from llmrec.eval.metrics import expected_rank, metrics_of_rows

RANKS = "ranks.jsonl"
RANKS_PARQUET = "ranks.parquet"
RUN = "run.json"
LOCK = ".lock"
BLOCKS_LOG = "blocks.jsonl"  # the Ray engine's commit log of finished blocks


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
             missed: bool = False, more: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """One `ranks.jsonl` row, the same for LLM and classic runs: candidates best first with their
    scores (the first `top_k`, or all), and the held-out item's expected rank among all of them.
    With `more` held-out items (a ratio split) the row also has every held-out item (`positives`)
    and each one's rank (`ranks`), and `rank` is the best of them."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if top_k:
        order = order[:top_k]
    rank = expected_rank(scores, candidates.index(positive)) if positive is not None and not more else None
    row = {"user_id": user_id, "positive": positive, "rank": rank,
           "candidates": [candidates[k] for k in order], "scores": [round(float(scores[k]), 6) for k in order],
           **extra}
    if more and positive is not None:  # a generated list may lack some held-out items: their rank is None
        row["positives"] = [positive, *more]
        row["ranks"] = [expected_rank(scores, candidates.index(p)) if p in candidates else None
                        for p in row["positives"]]
        row["rank"] = min((r for r in row["ranks"] if r is not None), default=None)
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


def check_engine(run_dir: Path, old: dict[str, Any], engine: str, output: str = "jsonl") -> None:
    """One run directory, one engine and one output format: their files do not resume each other."""
    if not old:
        return
    was, was_output = old.get("engine", "local"), old.get("output", "jsonl")
    has_rows = (run_dir / RANKS).is_file() and (run_dir / RANKS).stat().st_size > 0
    has_parts = (run_dir / BLOCKS_LOG).is_file() and (run_dir / BLOCKS_LOG).stat().st_size > 0
    if (was != engine or was_output != output) and (has_rows or has_parts):
        raise ConfigError(f"{run_dir} holds users ranked with rank.engine={was} rank.ray.output={was_output}; "
                          "resume it with those settings, or choose another rank.run_dir")


class RunWriter:
    """The life cycle of one run directory, the same for every kind of run:

        with RunWriter(run_dir, settings, config_toml, rerun, engine="local") as w:  # lock, checks
            done = w.resume()             # users already written (a torn last line cut first)
            w.start()                     # config.toml + run.json, once the model has loaded
            w.append(rows)                # as users finish
            w.finish(metrics, users=...)  # metrics.json + run.json (finished)

    `settings` is everything that changes a user's score: a directory with finished users only
    takes a job with the same settings (one with none, e.g. a first attempt that failed on a typo,
    may be restarted with new ones). `rerun` records how the run is recreated: `command` (the
    command line), and for scoring other candidates with the same settings, `command_on` with
    `{label}` and `{run_dir}` placeholders and `run_dir_on` with `{label}` (what `blend` tells a
    user to run for a missing validation run). `rewrite` runs (baselines, blends: cheap) replace
    their rows whole instead of resuming.
    """

    def __init__(self, run_dir: Path, settings: dict[str, Any], config_toml: str, rerun: dict[str, str],
                 engine: str = "local", output: str = "jsonl", rewrite: bool = False,
                 extra: dict[str, Any] | None = None) -> None:
        self.run_dir, self.settings, self.config_toml = Path(run_dir), settings, config_toml
        self.engine, self.output, self.rewrite = engine, output, rewrite
        self.meta: dict[str, Any] = {"settings": settings, "git_commit": git_commit(), "finished": False,
                                     "rerun": rerun, **({"engine": engine, "output": output} if engine != "local"
                                                        else {}), **(extra or {})}
        self._lock = RunLock(self.run_dir)

    def __enter__(self) -> Self:
        check_run_dir(self.run_dir)
        self._lock.__enter__()
        try:
            old = load_run(self.run_dir) if (self.run_dir / RUN).is_file() else {}
            check_engine(self.run_dir, old, self.engine, self.output)
            if self.rewrite:
                (self.run_dir / RANKS).unlink(missing_ok=True)
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__()

    def check_resume(self, finished: int) -> None:
        """Refuse to add to `finished` users written under other settings."""
        if not finished or not (self.run_dir / RUN).is_file():
            return
        old = load_run(self.run_dir).get("settings", {})
        diff = [f"{k}: {old.get(k)!r} -> {self.settings[k]!r}" for k in self.settings if old.get(k) != self.settings[k]]
        if diff:
            raise ConfigError(f"{self.run_dir} holds {finished} users ranked with other settings ({'; '.join(diff)}); "
                              "choose another rank.run_dir, or delete that directory to start over")

    def resume(self) -> set[str]:
        """The users already in `ranks.jsonl` (a torn last line from a killed job cut first)."""
        cut_torn_line(self.run_dir, self._lock)
        done = {r["user_id"] for r in read_ranks(self.run_dir)}
        self.check_resume(len(done))
        return done

    def start(self) -> None:
        """Record the run (config.toml, run.json unfinished): only once its model has loaded, so a
        backend or adapter that fails to load leaves no record behind."""
        if self.config_toml:
            (self.run_dir / "config.toml").write_text(self.config_toml)
        write_json(self.run_dir / RUN, self.meta)

    def append(self, rows: list[dict[str, Any]]) -> None:
        append_ranks(self.run_dir, rows)

    def finish(self, metrics: dict[str, Any], **counts: Any) -> None:
        if self.config_toml and not (self.run_dir / "config.toml").is_file():
            (self.run_dir / "config.toml").write_text(self.config_toml)
        write_json(self.run_dir / "metrics.json", metrics)
        self.meta.update(finished=True, **counts)
        write_json(self.run_dir / RUN, self.meta)


def rerun_record(command: list[str], command_on: list[str], run_dir_on: str) -> dict[str, str]:
    """`RunWriter`'s `rerun`: command lines as shell text (`{label}`/`{run_dir}` left as written)."""
    import shlex

    return {"command": shlex.join(command), "command_on": shlex.join(command_on), "run_dir_on": run_dir_on}
