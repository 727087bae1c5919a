"""`llmrec rank`: a batch ranking job (histories in, ranked candidates out), resumable.

Reads the prepared split and a candidate file (or a JSONL of user histories), scores each user's
candidates with the configured template, model and backend, and writes a run directory (see
`llmrec/eval/runs.py`). Restarted on the same run directory with the same settings, it skips
users already written; with other settings it refuses rather than mixing two runs in one file.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
from tqdm import tqdm

from llmrec.config import Config, dump_toml
from llmrec.data.candidates import CandidateSet
from llmrec.data.dataset import Dataset, Interaction
from llmrec.data.loaders import load_dataset
from llmrec.data.split import Split
from llmrec.errors import ConfigError, DataError
from llmrec.eval import runs
from llmrec.eval.compare import METRICS, adapter_label, user_rows_metrics
from llmrec.eval.metrics import expected_rank
from llmrec.prompts.render import load_template
from llmrec.scoring.rank import UserQuery


@dataclass
class Job:
    """Users to rank, in order, with what was skipped and why."""

    queries: list[UserQuery]
    positives: dict[str, str | None]
    source: str  # the candidates or input file
    source_sha256: str
    skipped: dict[str, int] = field(default_factory=dict)
    missed: set[str] = field(default_factory=set)  # users whose held-out item a retriever missed


@dataclass
class RankResult:
    run_dir: Path
    metrics: dict[str, float]
    users_ranked: int
    users_resumed: int
    skipped: dict[str, int]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _candidate_path(cfg: Config) -> Path:
    c = cfg.rank.candidates
    p = Path(c)
    return p if p.suffix == ".jsonl" or p.is_file() else Path(cfg.out_dir) / "candidates" / f"{c}.jsonl"


def _add(job: Job, ds: Dataset, cfg: Config, user_id: str, history: list[Interaction] | list[str],
         candidates: list[str], positive: str | None, where: str) -> None:
    """Apply the input policies: unknown ids (error or drop), empty history / candidates (skip)."""
    unknown = [i for i in candidates if i not in ds.items]
    if unknown:
        if cfg.rank.on_unknown == "error":
            raise DataError(f"{where}: user {user_id!r}: unknown item id {unknown[0]!r} among the candidates "
                            f"({len(unknown)} unknown; set rank.on_unknown=skip to drop them)")
        job.skipped["unknown_candidate_ids"] = job.skipped.get("unknown_candidate_ids", 0) + len(unknown)
        candidates = [i for i in candidates if i in ds.items]
        if positive is not None and positive not in ds.items:
            positive = None
    if positive is not None and positive not in candidates:
        raise DataError(f"{where}: user {user_id!r}: positive {positive!r} is not among the candidates")
    if not history:
        job.skipped["empty_history"] = job.skipped.get("empty_history", 0) + 1
        return
    if not candidates:
        job.skipped["empty_candidates"] = job.skipped.get("empty_candidates", 0) + 1
        return
    job.queries.append(UserQuery(user_id, history, candidates))  # type: ignore[arg-type]
    job.positives[user_id] = positive


def _from_candidates(cfg: Config, ds: Dataset) -> Job:
    path = _candidate_path(cfg)
    cs = CandidateSet.load(path)
    split = Split.load(Path(cfg.out_dir) / "split.jsonl")
    cs.check_dataset(ds.fingerprint(), path)
    split_hash = split.dataset_hash
    if split_hash != cs.dataset_hash:
        raise DataError(f"{path} and {cfg.out_dir}/split.jsonl come from different data; re-run `llmrec prepare`")
    job = Job([], {}, str(path), _sha256(path))
    for c in cs.lists:
        seq = split[c.user_id]
        history = seq.events(ds, cs.stage, cfg.split.history_len)
        _add(job, ds, cfg, c.user_id, history, list(c.candidates), c.positive, str(path))
        if c.missed is not None:
            job.missed.add(c.user_id)
    return job


def _from_input(cfg: Config, ds: Dataset) -> Job:
    """JSONL lines {"user_id", "history": [id | {"item_id", "rating"?, "timestamp"?}], "candidates", "positive"?}."""
    path = Path(cfg.rank.input)
    if not path.is_file():
        raise DataError(f"rank.input: file not found: {path}")
    job = Job([], {}, str(path), _sha256(path))
    seen: set[str] = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
            user_id = str(rec["user_id"])
            raw_history, candidates = rec["history"], [str(c) for c in rec["candidates"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{where}: expected {{\"user_id\", \"history\", \"candidates\"}} ({e})") from None
        if user_id in seen:
            raise DataError(f"{where}: user {user_id!r} appears twice")
        seen.add(user_id)
        history: list[Interaction] = []
        for h in raw_history[-cfg.split.history_len:]:
            h = h if isinstance(h, dict) else {"item_id": h}
            iid = str(h.get("item_id"))
            if iid not in ds.items:
                if cfg.rank.on_unknown == "error":
                    raise DataError(f"{where}: user {user_id!r}: unknown item id {iid!r} in the history "
                                    "(set rank.on_unknown=skip to drop unknown ids)")
                job.skipped["unknown_history_ids"] = job.skipped.get("unknown_history_ids", 0) + 1
                continue
            history.append(Interaction(ds.items[iid], float(h.get("rating", "nan")), float(h.get("timestamp", "nan"))))
        positive = rec.get("positive")
        _add(job, ds, cfg, user_id, history, candidates, None if positive is None else str(positive), where)
    return job


def check_adapter(adapter: str, template, log=print) -> None:
    """An adapter folder must exist; one trained for another template is allowed but flagged."""
    path = Path(adapter)
    if not path.is_dir() or not (path / "adapter_config.json").is_file():
        raise ConfigError(f"model.adapter: {adapter} is not a peft adapter folder (no adapter_config.json); "
                          "`llmrec train` writes one to <train.out>/best")
    meta = path / "template.json"
    if meta.is_file():
        trained = json.loads(meta.read_text())
        if trained.get("sha256") != template.sha256:
            log(f"warning: adapter {adapter} was trained on template {trained.get('template')} "
                f"(sha256 {str(trained.get('sha256'))[:12]}), not on {template.name} as ranked now")


def default_run_dir(cfg: Config) -> Path:
    if cfg.rank.run_dir:
        return Path(cfg.rank.run_dir)
    source = Path(cfg.rank.input).stem if cfg.rank.input else Path(cfg.rank.candidates).name.removesuffix(".jsonl")
    template = Path(cfg.rank.template).stem if cfg.rank.template.endswith(".j2") else cfg.rank.template
    name = f"{template.replace('/', '-')}--{Path(cfg.model.name).name}"
    if cfg.model.adapter:
        name += f"--{adapter_label(cfg.model.adapter)}"
    return Path(cfg.out_dir) / "rank" / f"{name}--{cfg.rank.scoring}--{source}"


def run(cfg: Config, log=print) -> RankResult:
    template = load_template(cfg.rank.template)  # fail on a broken template before loading a model
    if cfg.model.adapter:
        check_adapter(cfg.model.adapter, template, log)
    ds = load_dataset(cfg.data, log)
    job = _from_input(cfg, ds) if cfg.rank.input else _from_candidates(cfg, ds)
    if cfg.rank.users:
        job.queries = job.queries[: cfg.rank.users]
    if cfg.rank.shard >= 0:
        job.queries = job.queries[cfg.rank.shard::cfg.rank.shards]

    run_dir = default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "template": template.name, "template_sha256": template.sha256, "model": cfg.model.name,
        "adapter": cfg.model.adapter, "backend": cfg.rank.backend, "scoring": cfg.rank.scoring,
        "seed": cfg.rank.seed, "source": job.source, "source_sha256": job.source_sha256,
        "dataset_hash": ds.fingerprint(), "history_len": cfg.split.history_len,
        "max_prompt_tokens": cfg.rank.max_prompt_tokens, "top_k": cfg.rank.top_k,
    }
    if (run_dir / runs.RUN).is_file():
        old = runs.load_run(run_dir).get("settings", {})
        diff = sorted(k for k in settings if old.get(k) != settings[k])
        if diff:
            raise ConfigError(f"{run_dir} holds a run with other settings ({', '.join(diff)}); "
                              "choose another rank.run_dir or delete that directory")
    (run_dir / "config.toml").write_text(dump_toml(cfg))
    meta: dict[str, Any] = {"settings": settings, "git_commit": runs.git_commit(), "finished": False,
                            "candidates_file": job.source, "template_path": str(template.path),
                            "skipped": job.skipped}
    runs.write_json(run_dir / runs.RUN, meta)

    if cfg.rank.shards > 1 and cfg.rank.shard < 0:
        run_shards(cfg, run_dir, [q.user_id for q in job.queries], log)
    done = {r["user_id"] for r in runs.read_ranks(run_dir)}
    todo = [q for q in job.queries if q.user_id not in done]
    resumed = len(job.queries) - len(todo)
    if resumed:
        log(f"resuming {run_dir}: {resumed} users already ranked, {len(todo)} to go")

    started = time.time()
    if todo:
        from llmrec.backends import make_backend
        from llmrec.models.load import load_tokenizer
        from llmrec.scoring.rank import LLMRanker

        options: dict[str, Any] = {"device": cfg.model.device, "dtype": cfg.model.dtype, "adapter": cfg.model.adapter}
        if cfg.rank.backend == "hf":
            options.update(shared_prefix=cfg.rank.shared_prefix, batch_tokens=cfg.rank.batch_tokens)
        elif cfg.rank.backend == "vllm":
            options.update(settings=cfg.vllm)
        backend = make_backend(cfg.rank.backend, cfg.model.name, **options)
        ranker = LLMRanker(template, backend, load_tokenizer(cfg.model.name), ds, cfg.rank.scoring,
                           cfg.rank.max_prompt_tokens, cfg.rank.seed)
        stop = _StopOnSignal()
        try:
            with stop, tqdm(total=len(job.queries), initial=resumed, unit="user", desc="rank",
                            dynamic_ncols=True) as bar:
                for start in range(0, len(todo), cfg.rank.batch_users):
                    chunk = todo[start:start + cfg.rank.batch_users]
                    rows = [_row(s, job.positives[s.user_id], cfg.rank.top_k, s.user_id in job.missed)
                            for s in ranker.score(chunk)]
                    runs.append_ranks(run_dir, rows)
                    bar.update(len(chunk))
                    if stop.requested:
                        raise KeyboardInterrupt
        finally:
            backend.close()
    elapsed = time.time() - started

    rows = runs.read_ranks(run_dir)
    order = {q.user_id: k for k, q in enumerate(job.queries)}
    assert len({r["user_id"] for r in rows}) == len(rows), "a user was written twice"
    metrics = metrics_of_rows([r for r in rows if r["user_id"] in order])
    runs.write_json(run_dir / "metrics.json", metrics)
    meta.update(finished=True, users=len(rows), users_ranked_now=len(todo), seconds_now=round(elapsed, 2),
                users_per_second=round(len(todo) / elapsed, 3) if todo and elapsed else None)
    runs.write_json(run_dir / runs.RUN, meta)
    log(f"ranked {len(todo)} users in {elapsed:.1f}s ({resumed} resumed); skipped: {job.skipped or 'none'}")
    log(f"run directory: {run_dir}")
    log("metrics: " + ", ".join(f"{k}={v:.4f}" if k != "users" else f"users={v}" for k, v in metrics.items()))
    return RankResult(run_dir, metrics, len(todo), resumed, job.skipped)


class _StopOnSignal:
    """Ctrl-C / SIGTERM during ranking: finish and save the current batch, then stop (a second
    signal stops at once). Installed after the backend starts, so an engine that handles SIGINT
    itself (vLLM) cannot swallow it; outside the main thread it does nothing."""

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


def run_shards(cfg: Config, run_dir: Path, order: list[str], log=print) -> None:
    """Data-parallel ranking: one `llmrec rank` process per shard, each a resumable run directory
    under `<run_dir>/shards/` (on GPU machines shard i sees GPU i when there are enough GPUs), then
    the shards' users are merged into `<run_dir>/ranks.jsonl`: each user once, in job order."""
    import os
    import subprocess
    import sys

    import torch

    n = cfg.rank.shards
    gpus = torch.cuda.device_count()
    (run_dir / "shards").mkdir(exist_ok=True)
    procs = []
    for i in range(n):
        shard_dir = run_dir / "shards" / f"{i}-of-{n}"
        env = dict(os.environ)
        if gpus >= n:
            env["CUDA_VISIBLE_DEVICES"] = str(i)
        args = [sys.executable, "-m", "llmrec.cli", "rank", "--config", str(run_dir / "config.toml"),
                f"rank.shard={i}", f"rank.run_dir={shard_dir}"]
        log_file = open(run_dir / "shards" / f"{i}-of-{n}.log", "a")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT), log_file))
    log(f"ranking in {n} shard processes (logs: {run_dir / 'shards'})")
    failed = []
    try:
        for i, (proc, log_file) in enumerate(procs):
            if proc.wait() != 0:
                failed.append(i)
            log_file.close()
    except KeyboardInterrupt:
        for proc, _ in procs:
            proc.terminate()
        raise
    if failed:
        raise DataError(f"rank shards {failed} failed; see {run_dir / 'shards'}/*.log (rerun to resume)")
    done = {r["user_id"] for r in runs.read_ranks(run_dir)}
    rows = {r["user_id"]: r for i in range(n) for r in runs.read_ranks(run_dir / "shards" / f"{i}-of-{n}")}
    runs.append_ranks(run_dir, [rows[u] for u in order if u in rows and u not in done])


def _row(s, positive: str | None, top_k: int, missed: bool = False) -> dict[str, Any]:
    order = sorted(range(len(s.candidates)), key=lambda k: -s.scores[k])
    if top_k:
        order = order[:top_k]
    rank = expected_rank(s.scores, s.candidates.index(positive)) if positive is not None else None
    row = {"user_id": s.user_id, "positive": positive, "rank": rank,
           "candidates": [s.candidates[k] for k in order], "scores": [round(float(s.scores[k]), 6) for k in order],
           "dropped_history": s.dropped, "prompt_tokens": s.prompt_tokens}
    if missed:
        row["missed"] = True
    return row


def metrics_of_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean metrics over users with a known held-out item; retriever misses count as misses."""
    per_user = user_rows_metrics(rows)
    if not per_user:
        return {"users": 0}
    out = {k: float(np.mean([m[k] for m in per_user.values()])) for k in METRICS}
    out["users"] = len(per_user)
    out["retriever_missed"] = sum(1 for r in rows if r.get("missed"))
    return out
