"""`llmrec rank`: a batch ranking job (histories in, ranked candidates out), resumable.

Reads the prepared split and a candidate file (or a JSONL / Parquet of user histories), scores
each user's candidates with the configured template, model and backend, and writes a run
directory through the one run writer (`llmrec/eval/runs.py`). Restarted on the same run directory
with the same settings, it skips users already written; with other settings it refuses rather
than mixing two runs in one file. `rank.engine = "ray"` runs the same job on Ray actors
(`llmrec/jobs/ray.py`), with the same settings, rows and run directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from llmrec.config import Config, dump_toml
from llmrec.data import queries
from llmrec.data.prepared import Prepared, open_prepared
from llmrec.eval import runs
from llmrec.eval.compare import adapter_label
from llmrec.eval.metrics import metrics_of_rows
from llmrec.models.adapters import adapter_sha256
from llmrec.models.load import resolved_dtype
from llmrec.prompts.render import Template, load_template
from llmrec.scoring.build import build_ranker, check_adapter


@dataclass
class RankResult:
    run_dir: Path
    metrics: dict[str, float]
    users_ranked: int
    users_resumed: int
    skipped: dict[str, int]


def default_run_dir(cfg: Config, label: str | None = None) -> Path:
    """`<out_dir>/rank/<template>--<model>[--<adapter>]--<scoring>--<source>`, or `rank.run_dir`;
    `label` names another candidate source (the run of these settings on it)."""
    if cfg.rank.run_dir and label is None:
        return Path(cfg.rank.run_dir)
    source = label or (Path(cfg.rank.input).stem if cfg.rank.input
                       else Path(cfg.rank.candidates).name.removesuffix(".jsonl"))
    template = Path(cfg.rank.template).stem if cfg.rank.template.endswith(".j2") else cfg.rank.template
    name = f"{template.replace('/', '-')}--{Path(cfg.model.name).name}"
    if cfg.model.adapter:
        name += f"--{adapter_label(cfg.model.adapter)}"
    beam = f"--beam{cfg.rank.beam}" if cfg.rank.beam else ""
    return Path(cfg.out_dir) / "rank" / f"{name}--{cfg.rank.scoring}--{source}{beam}"


def score_settings(cfg: Config, template: Template, source: str, source_sha256: str, dataset_hash: str,
                   dtype: str) -> dict[str, Any]:
    """Everything that changes a user's scores or rank: a resume must match all of it. `dtype`:
    as the scoring device resolves `model.dtype`."""
    return {
        "template": template.name, "template_sha256": template.sha256, "model": cfg.model.name,
        "adapter": cfg.model.adapter, "adapter_sha256": adapter_sha256(cfg.model.adapter) if cfg.model.adapter else "",
        "dtype": dtype, "backend": cfg.rank.backend, "scoring": cfg.rank.scoring,
        "seed": cfg.rank.seed, "source": source, "source_sha256": source_sha256,
        "dataset_hash": dataset_hash, "history_len": cfg.split.history_len,
        "max_prompt_tokens": cfg.rank.max_prompt_tokens, "top_k": cfg.rank.top_k, "on_unknown": cfg.rank.on_unknown,
        **({"beam": cfg.rank.beam} if cfg.rank.beam else {}),
        **({"shuffles": cfg.rank.shuffles} if cfg.rank.shuffles > 1 else {}),
    }


def rerun(cfg: Config, run_dir: Path, prepared: Prepared) -> dict[str, str]:
    """How this run is recreated, and run on other candidates with every candidate written."""
    config = str(run_dir / "config.toml")
    key = "rank.input" if cfg.rank.input else "rank.candidates"
    source = Path(cfg.rank.input or prepared.candidates_path(cfg.rank.candidates))
    on = "{label}" if source.parent == prepared.out_dir / "candidates" else str(source.parent / "{label}.jsonl")
    return runs.rerun_record(
        ["llmrec", "rank", "--config", config],
        ["llmrec", "rank", "--config", config, f"{key}={on}", "rank.top_k=0", "rank.run_dir={run_dir}"],
        str(default_run_dir(cfg, "{label}")) if not cfg.rank.run_dir else f"{run_dir}--{{label}}")


def run(cfg: Config, log=print, make_scorer=None) -> RankResult:
    """Rank the job `cfg` describes in this process (rank.engine=local) or on Ray actors (ray);
    `make_scorer` replaces the LLM ranker (the Ray engine's benchmark scores with a trivial one)."""
    template = load_template(cfg.rank.template)  # fail on a broken template before loading a model
    check_adapter(cfg, template, log)
    prepared = open_prepared(cfg, log)
    cfg = prepared.cfg
    ds = prepared.dataset(log)
    run_dir = default_run_dir(cfg)
    if cfg.rank.engine == "ray":
        return _on_ray(cfg, template, prepared, ds, run_dir, log, make_scorer)
    job = prepared.job(ds)
    if cfg.rank.users:
        job.queries = job.queries[: cfg.rank.users]
    settings = score_settings(cfg, template, job.source, job.source_sha256, ds.fingerprint(),
                              resolved_dtype(cfg.model))
    extra = {"candidates_file": job.source, "template_path": str(template.path), "skipped": job.skipped}
    log(f"rank: {template.name} on {cfg.model.name}{' + ' + cfg.model.adapter if cfg.model.adapter else ''} "
        f"({cfg.rank.backend}), {len(job.queries)} users of {Path(job.source).name} -> {run_dir}")
    writer = runs.RunWriter(run_dir, settings, dump_toml(cfg), rerun(cfg, run_dir, prepared), extra=extra)
    with writer:
        done = writer.resume()
        todo = [q for q in job.queries if q.user_id not in done]
        resumed = len(job.queries) - len(todo)
        if resumed:
            log(f"resuming {run_dir}: {resumed} users already ranked, {len(todo)} to go")
        started = time.time()
        if todo:
            rank_users(cfg, template, ds, job, todo, writer, resumed)
        elif not (run_dir / runs.RUN).is_file():
            writer.start()
        elapsed = time.time() - started
        rows = runs.read_ranks(run_dir)
        order = {q.user_id for q in job.queries}
        mine = [r for r in rows if r["user_id"] in order]
        metrics = metrics_of_rows(mine)
        generation = {"generation": generation_stats(mine, job)} if cfg.rank.beam else {}
        if positions := by_position(mine):
            generation["hr1_by_target_position"] = positions
        writer.finish(metrics, users=len(mine), rows_in_file=len(rows), users_ranked_now=len(todo),
                      seconds_now=round(elapsed, 2),
                      users_per_second=round(len(todo) / elapsed, 3) if todo and elapsed else None, **generation)
    log(f"ranked {len(todo)} users in {elapsed:.1f}s ({resumed} resumed); skipped: {job.skipped or 'none'}")
    log(f"run directory: {run_dir}")
    log("metrics: " + ", ".join(f"{k}={v:.4f}" if k != "users" else f"users={v}" for k, v in metrics.items()))
    return RankResult(run_dir, metrics, len(todo), resumed, job.skipped)


def row(s, job: queries.Job, top_k: int) -> dict[str, Any]:
    """A user's ranks row; a generated list that lacks the held-out item counts as a miss."""
    positive, more = job.positives[s.user_id], job.more.get(s.user_id, ())
    held = () if positive is None else (positive, *more)
    missed = s.user_id in job.missed or (bool(held) and not any(p in s.candidates for p in held))
    r = runs.rank_row(s.user_id, s.candidates, s.scores, None if missed else positive, top_k, missed, more,
                      dropped_history=s.dropped, prompt_tokens=s.prompt_tokens,
                      **s.position(None if missed or more else positive))
    r["positive"] = positive
    return r


def by_position(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """HR@1 by the target's position in a list prompt (the position-bias report of list styles)."""
    out: dict[int, list[float]] = {}
    for r in rows:
        if "target_position" in r and r.get("rank") is not None:
            out.setdefault(r["target_position"], []).append(float(r["rank"] <= 1))
    return {str(p): {"users": len(v), "hr@1": round(sum(v) / len(v), 4)} for p, v in sorted(out.items())}


def generation_stats(rows: list[dict[str, Any]], job: queries.Job) -> dict[str, float]:
    """Shares of generated items that are not candidates (invalid), repeated in a list, or in the
    user's history, and how often the held-out item was generated (all but the last are 0 by
    construction of the trie search: counted, not assumed)."""
    allowed = {q.user_id: set(q.candidates) for q in job.queries}
    seen = {q.user_id: {h.item.id for h in q.history} for q in job.queries}
    n = sum(len(r["candidates"]) for r in rows) or 1
    return {"items": n, "invalid": sum(c not in allowed[r["user_id"]] for r in rows for c in r["candidates"]) / n,
            "duplicates": sum(len(r["candidates"]) - len(set(r["candidates"])) for r in rows) / n,
            "history_repeats": sum(c in seen[r["user_id"]] for r in rows for c in r["candidates"]) / n,
            "positive_found": sum(not r.get("missed") for r in rows) / max(len(rows), 1)}


def _on_ray(cfg: Config, template: Template, prepared: Prepared, ds, run_dir: Path, log, make_scorer) -> RankResult:
    """The job on Ray actors (`llmrec/jobs/ray.py`): the same settings, rows and run directory."""
    from llmrec.jobs import ray as engine

    source = engine.plan(cfg, prepared, log)
    log(f"rank: {template.name} on {cfg.model.name}{' + ' + cfg.model.adapter if cfg.model.adapter else ''} "
        f"({cfg.rank.backend}, Ray), {source.records} records of {Path(source.path).name} -> {run_dir}")

    def writer_of(dtype: str) -> runs.RunWriter:
        settings = score_settings(cfg, template, source.path, source.sha256, ds.fingerprint(), dtype)
        extra = {"candidates_file": source.path, "template_path": str(template.path), "blocks": len(source.blocks)}
        return runs.RunWriter(run_dir, settings, dump_toml(cfg), rerun(cfg, run_dir, prepared), engine="ray",
                              output=cfg.rank.ray.output, extra=extra)

    res = engine.run(cfg, template, source, writer_of, log, make_scorer)
    log(f"ranked {res.users_ranked} users ({res.users_resumed} resumed); skipped: {res.skipped or 'none'}")
    log(f"run directory: {run_dir}")
    log("metrics: " + ", ".join(f"{k}={v:.4f}" if k != "users" else f"users={v}" for k, v in res.metrics.items()))
    return RankResult(run_dir, res.metrics, res.users_ranked, res.users_resumed, res.skipped)


def rank_users(cfg: Config, template: Template, ds, job: queries.Job, todo: list[queries.UserQuery],
               writer: runs.RunWriter, resumed: int) -> None:
    """Build the ranker, then record the run (only now: a backend or adapter that fails to load
    leaves no run.json behind) and score `todo` batch by batch, appending each batch's rows."""
    ranker = build_ranker(cfg, template, ds, job.stage)
    try:
        writer.start()
        stop = runs.StopOnSignal()
        with stop, tqdm(total=len(job.queries), initial=resumed, unit="user", desc="rank", dynamic_ncols=True) as bar:
            for start in range(0, len(todo), cfg.rank.batch_users):
                chunk = todo[start:start + cfg.rank.batch_users]
                scored = ranker.generate(chunk, cfg.rank.top_k, cfg.rank.beam) if cfg.rank.beam else ranker.score(chunk)
                writer.append([row(s, job, cfg.rank.top_k) for s in scored])
                bar.update(len(chunk))
                if stop.requested:
                    raise KeyboardInterrupt
    finally:
        ranker.close()
