"""`llmrec rank`: a batch ranking job (histories in, ranked candidates out), resumable.

Reads the prepared split and a candidate file (or a JSONL of user histories), scores each user's
candidates with the configured template, model and backend, and writes a run directory (see
`llmrec/eval/runs.py`). Restarted on the same run directory with the same settings, it skips
users already written; with other settings it refuses rather than mixing two runs in one file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from llmrec.config import Config, dump_toml
from llmrec.data import queries
from llmrec.data.prepared import open_prepared
from llmrec.errors import ConfigError
from llmrec.eval import runs
from llmrec.eval.compare import adapter_label
from llmrec.eval.metrics import metrics_of_rows
from llmrec.models.adapters import adapter_sha256
from llmrec.prompts.render import load_template


@dataclass
class RankResult:
    run_dir: Path
    metrics: dict[str, float]
    users_ranked: int
    users_resumed: int
    skipped: dict[str, int]


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


def resolved_dtype(cfg: Config) -> str:
    """`model.dtype` as the backend will run it ("auto" is bf16 on a GPU, fp32 on a CPU)."""
    from llmrec.models.load import pick_device, pick_dtype

    return str(pick_dtype(cfg.model.dtype, pick_device(cfg.model.device))).removeprefix("torch.")


def score_settings(cfg: Config, template, job: queries.Job, dataset_hash: str, dtype: str = "") -> dict[str, Any]:
    """Everything that changes a user's scores or rank: a resume must match all of it. `dtype`:
    as the scoring device resolves `model.dtype` (default: this process's device)."""
    return {
        "template": template.name, "template_sha256": template.sha256, "model": cfg.model.name,
        "adapter": cfg.model.adapter, "adapter_sha256": adapter_sha256(cfg.model.adapter) if cfg.model.adapter else "",
        "dtype": dtype or resolved_dtype(cfg), "backend": cfg.rank.backend, "scoring": cfg.rank.scoring,
        "seed": cfg.rank.seed, "source": job.source, "source_sha256": job.source_sha256,
        "dataset_hash": dataset_hash, "history_len": cfg.split.history_len,
        "max_prompt_tokens": cfg.rank.max_prompt_tokens, "top_k": cfg.rank.top_k, "on_unknown": cfg.rank.on_unknown,
    }


def check_resume(run_dir: Path, settings: dict[str, Any], finished: int) -> None:
    """A run directory with finished users only takes a job with the same settings; one with none
    (e.g. a first attempt that failed on a typo) may be restarted with new ones."""
    if not finished or not (run_dir / runs.RUN).is_file():
        return
    old = runs.load_run(run_dir).get("settings", {})
    diff = [f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in settings if old.get(k) != settings[k]]
    if diff:
        raise ConfigError(f"{run_dir} holds {finished} users ranked with other settings ({'; '.join(diff)}); "
                          "choose another rank.run_dir, or delete that directory to start over")


def run(cfg: Config, log=print, make_scorer=None) -> RankResult:
    """Rank the job `cfg` describes in this process (rank.engine=local) or on Ray actors (ray);
    `make_scorer` replaces the LLM ranker (the Ray engine's benchmark scores with a trivial one)."""
    template = load_template(cfg.rank.template)  # fail on a broken template before loading a model
    if cfg.model.adapter:
        check_adapter(cfg.model.adapter, template, log)
    if template.uses_cf and not (cfg.model.adapter and (Path(cfg.model.adapter) / "cf.json").is_file()):
        raise ConfigError(f"{template.name} places collaborative vectors (| cf): rank it with model.adapter set to an "
                          "adapter trained on it (`llmrec train` with train.cf_vectors writes one)")
    prepared = open_prepared(cfg, log)
    cfg = prepared.cfg
    ds = prepared.dataset(log)
    run_dir = default_run_dir(cfg)
    if cfg.rank.engine == "ray":
        from llmrec.recipes import rank_ray

        return rank_ray.run(cfg, template, prepared, ds,
                            lambda job, dtype: score_settings(cfg, template, job, ds.fingerprint(), dtype),
                            run_dir, log, make_scorer)
    job = prepared.job(ds)
    if cfg.rank.users:
        job.queries = job.queries[: cfg.rank.users]

    runs.check_run_dir(run_dir)
    settings = score_settings(cfg, template, job, ds.fingerprint())
    with runs.RunLock(run_dir) as lock:
        from llmrec.recipes.rank_ray import check_engine

        check_engine(run_dir, runs.load_run(run_dir) if (run_dir / runs.RUN).is_file() else {}, "local")
        runs.cut_torn_line(run_dir, lock)
        done = {r["user_id"] for r in runs.read_ranks(run_dir)}
        check_resume(run_dir, settings, len(done))
        meta: dict[str, Any] = {"settings": settings, "git_commit": runs.git_commit(), "finished": False,
                                "candidates_file": job.source, "template_path": str(template.path),
                                "skipped": job.skipped}

        def record_start() -> None:
            (run_dir / "config.toml").write_text(dump_toml(cfg))
            runs.write_json(run_dir / runs.RUN, meta)

        todo = [q for q in job.queries if q.user_id not in done]
        resumed = len(job.queries) - len(todo)
        if resumed:
            log(f"resuming {run_dir}: {resumed} users already ranked, {len(todo)} to go")

        started = time.time()
        if todo:
            rank_users(cfg, template, ds, job, todo, run_dir, resumed, record_start)
        elif not (run_dir / runs.RUN).is_file():
            record_start()
        elapsed = time.time() - started

        rows = runs.read_ranks(run_dir)
        order = {q.user_id for q in job.queries}
        mine = [r for r in rows if r["user_id"] in order]
        metrics = metrics_of_rows(mine)
        runs.write_json(run_dir / "metrics.json", metrics)
        meta.update(finished=True, users=len(mine), rows_in_file=len(rows), users_ranked_now=len(todo),
                    seconds_now=round(elapsed, 2),
                    users_per_second=round(len(todo) / elapsed, 3) if todo and elapsed else None)
        runs.write_json(run_dir / runs.RUN, meta)
    log(f"ranked {len(todo)} users in {elapsed:.1f}s ({resumed} resumed); skipped: {job.skipped or 'none'}")
    log(f"run directory: {run_dir}")
    log("metrics: " + ", ".join(f"{k}={v:.4f}" if k != "users" else f"users={v}" for k, v in metrics.items()))
    return RankResult(run_dir, metrics, len(todo), resumed, job.skipped)


def build_ranker(cfg: Config, template, ds, stage: str):
    """The backend `cfg` names and the LLM ranker over it, reading `stage`'s collaborative vectors."""
    from llmrec.backends import backend_from_config
    from llmrec.models.load import load_tokenizer
    from llmrec.scoring.rank import LLMRanker

    backend = backend_from_config(cfg)
    try:
        if getattr(backend, "slots", None) is not None:
            backend.slots.set_stage(stage)  # the user vectors that score this stage's target
        ranker = LLMRanker(template, backend, load_tokenizer(cfg.model.name), ds, cfg.rank.scoring,
                           cfg.rank.max_prompt_tokens, cfg.rank.seed)
    except BaseException:
        backend.close()
        raise
    return ranker, backend


def rank_users(cfg: Config, template, ds, job: queries.Job, todo: list[queries.UserQuery], run_dir: Path,
               resumed: int, record_start) -> None:
    """Build the backend, then record the run (only now: a backend or adapter that fails to load
    leaves no run.json behind) and score `todo` batch by batch, appending each batch's rows."""
    ranker, backend = build_ranker(cfg, template, ds, job.stage)
    try:
        record_start()
        stop = runs.StopOnSignal()
        with stop, tqdm(total=len(job.queries), initial=resumed, unit="user", desc="rank", dynamic_ncols=True) as bar:
            for start in range(0, len(todo), cfg.rank.batch_users):
                chunk = todo[start:start + cfg.rank.batch_users]
                rows = [runs.rank_row(s.user_id, s.candidates, s.scores, job.positives[s.user_id], cfg.rank.top_k,
                                      s.user_id in job.missed, dropped_history=s.dropped,
                                      prompt_tokens=s.prompt_tokens)
                        for s in ranker.score(chunk)]
                runs.append_ranks(run_dir, rows)
                bar.update(len(chunk))
                if stop.requested:
                    raise KeyboardInterrupt
    finally:
        backend.close()
