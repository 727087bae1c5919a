"""Run directories: what every ranking run leaves behind (DESIGN.md).

    config.toml   the resolved config
    run.json      settings fingerprint (template hash, model, adapter, candidates file hash,
                  dataset hash), git commit, counts, timing
    ranks.jsonl   one line per user: ranked candidates, scores, rank of the held-out item
    metrics.json  HR@K, NDCG@K, MRR over users with a known positive

`ranks.jsonl` is appended to as users finish, so a killed job loses at most the batch in flight
and a restart skips finished users.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from llmrec.errors import DataError

RANKS = "ranks.jsonl"
RUN = "run.json"


def git_commit() -> str:
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def read_ranks(run_dir: Path) -> list[dict[str, Any]]:
    """Finished users of a run. A torn last line (job killed mid-write) is cut off the file."""
    path = run_dir / RANKS
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    rows = []
    for n, line in enumerate(data.decode().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: corrupt line ({e.msg}); delete the run directory to start over") from None
    return rows


def append_ranks(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    with open(run_dir / RANKS, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def load_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN
    if not path.is_file():
        raise DataError(f"{run_dir} is not a run directory (no {RUN})")
    return json.loads(path.read_text())
