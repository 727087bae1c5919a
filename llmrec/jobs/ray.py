"""The Ray engine of `llmrec rank` (`rank.engine = "ray"`): the batch job data-parallel on a Ray cluster.

The input is planned in blocks of `rank.ray.block_users` users (`llmrec/data/blocks.py`, streamed,
never held whole). A Ray Dataset of the blocks still to do runs through `map_batches` with a
stateful class: each actor builds the ranker and backend once (HF or vLLM, adapters included) and
then ranks one block per call, returning the block's rows already encoded. The driver writes each
block as one part file (written whole, then renamed) and commits it in `blocks.jsonl`; when every
block is committed the parts are merged, in input order, into the run directory's usual files:

    ranks.jsonl     (rank.ray.output=jsonl; the parts stay in ranks.parts/ for resumes)
    ranks.parquet/  (rank.ray.output=parquet; one file per block, read by pandas, pyarrow, Spark)
    metrics.json    from per-block metric sums, so no process holds every row
    run.json        settings, engine, actors, counts and timing

Resume and failures: a rerun skips committed blocks before the dataset is built. Ray restarts an
actor that dies (up to `RETRIES` times) and reruns its block; a block is written only when it is
finished, so it is never half there or there twice. Errors in the input (an unknown item id, a
malformed line) stop the job with the reader's own `file:line` message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from llmrec.config import Config
from llmrec.data import blocks, queries
from llmrec.data.prepared import Prepared
from llmrec.errors import ConfigError, DataError
from llmrec.eval import runs
from llmrec.eval.metrics import metrics_of_sums, sums_of_rows
from llmrec.eval.runs import BLOCKS_LOG
from llmrec.models.load import resolved_dtype

PARTS = {"jsonl": "ranks.parts", "parquet": runs.RANKS_PARQUET}
RETRIES = 3  # restarts of a dead actor and reruns of its block, so a block that always kills its actor fails the job


class Scorer(Protocol):
    def score(self, qs: list[queries.UserQuery]) -> list[Any]: ...  # objects like scoring.rank.Scored
    def close(self) -> None: ...


ScorerFactory = Callable[[Config, Any, Any, str], Scorer]  # (cfg, template, dataset, stage) -> Scorer


def llm_scorer(cfg: Config, template, ds, stage: str) -> Scorer:
    """The LLM ranker, as `llmrec rank` builds it (it owns and closes its backend)."""
    from llmrec.scoring.build import build_ranker

    return build_ranker(cfg, template, ds, stage)


def part_path(parts: Path, name: str, output: str) -> Path:
    return parts / f"part-{name}.{output}"


class BlockRanker:
    """One Ray actor: loads the data and builds the scorer once, then ranks one block per call."""

    def __init__(self, cfg: Config, source: blocks.Source, make_scorer: ScorerFactory, threads: int,
                 dtype: str) -> None:
        import torch

        from llmrec.prompts.render import load_template

        torch.set_num_threads(max(1, threads))
        self.cfg, self.source, self.error = cfg, source, ""
        try:
            if resolved_dtype(cfg.model) != dtype:
                raise ConfigError(f"model.dtype={cfg.model.dtype} runs as {resolved_dtype(cfg.model)} on this actor's device, "
                                  f"not {dtype} as recorded for the job; set model.dtype explicitly")
            prepared = Prepared(Path(cfg.out_dir), cfg)
            self.ds = prepared.dataset(log=lambda *_: None)
            self.split = prepared.split() if source.kind == "candidates" else None
            self.scorer = make_scorer(cfg, load_template(cfg.rank.template), self.ds, source.stage)
        except (DataError, ConfigError) as e:  # reported by the first call: Ray would retry a failed constructor
            self.error = f"{type(e).__name__}: {e}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {"name": [], "payload": [], "records": [], "summary": [], "error": []}
        fields = [f.name for f in dataclasses.fields(blocks.Block)]
        for i in range(len(batch["start"])):
            block = blocks.Block(**{k: int(batch[k][i]) for k in fields})
            payload, summary, error = b"", "", self.error
            if not error:
                try:
                    rows, job = self.rank(block)
                    payload = runs.encode_rows(rows, self.cfg.rank.ray.output)
                    summary = json.dumps({"users": len(rows), "skipped": job.skipped, "sums": sums_of_rows(rows)})
                except (DataError, ConfigError) as e:  # bad input: returned, as Ray's wrapper would lose its type
                    error = f"{type(e).__name__}: {e}"
            for key, value in (("name", block.name), ("payload", payload), ("records", block.stop - block.start),
                               ("summary", summary), ("error", error)):
                out[key].append(value)
        return out

    def __del__(self) -> None:  # Ray Data drops the actor at the end of the job: free the engine
        scorer = getattr(self, "scorer", None)
        if scorer is not None:
            scorer.close()

    def rank(self, block: blocks.Block) -> tuple[list[dict[str, Any]], queries.Job]:
        r = self.cfg.rank
        job = blocks.read_block(self.source, block, self.ds, self.split, self.cfg.split.history_len, r.on_unknown)
        rows = []
        for start in range(0, len(job.queries), r.batch_users):
            for s in self.scorer.score(job.queries[start:start + r.batch_users]):
                missed = s.user_id in job.missed
                more = job.more.get(s.user_id, ())
                rows.append(runs.rank_row(s.user_id, s.candidates, s.scores, job.positives[s.user_id], r.top_k,
                                          missed, more, dropped_history=s.dropped, prompt_tokens=s.prompt_tokens,
                                          **s.position(None if missed or more else job.positives[s.user_id])))
        return rows, job


def connect(address: str, log=print) -> None:
    """Join the cluster `address` names; "auto" falls back to a new local cluster when none runs."""
    import logging

    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the job's own bar and log say what runs
    if not ray.is_initialized():
        _init(address, log)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the job's own bar counts users


def _init(address: str, log=print) -> None:
    import ray

    quiet = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": True}
    if address == "local":
        ray.init(**quiet)
    elif address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except ConnectionError:
            log("no running Ray cluster found (RAY_ADDRESS or `ray start`): starting a local one")
            ray.init(**quiet)
    else:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as e:
            raise ConfigError(f"rank.ray.address={address!r}: cannot reach a Ray cluster ({e})") from None


def sizing(cfg: Config) -> dict[str, float]:
    """Actors, GPUs and CPUs per actor from `[rank.ray]` and the cluster's resources (0 / -1: auto)."""
    import ray

    r, have = cfg.rank.ray, ray.cluster_resources()
    gpus, cpus = have.get("GPU", 0.0), have.get("CPU", 1.0)
    per_gpu = r.gpus_per_actor if r.gpus_per_actor >= 0 else (1.0 if gpus else 0.0)
    if per_gpu > gpus:
        raise ConfigError(f"rank.ray.gpus_per_actor={per_gpu:g}, but the Ray cluster has {gpus:g} GPUs")
    tp = cfg.backend_settings.tensor_parallel_size if cfg.rank.backend == "vllm" else 1
    if per_gpu and tp > per_gpu:
        raise ConfigError(f"backend.vllm.tensor_parallel_size={tp} needs that many GPUs per actor: "
                          f"set rank.ray.gpus_per_actor={tp}")
    nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")] or [cpus]
    actors = r.actors or (max(1, int(gpus // per_gpu)) if per_gpu else len(nodes))
    # Without GPUs an actor takes a node's cores (torch threads), or its share of the smallest node's.
    per_cpu = r.cpus_per_actor or (1.0 if per_gpu else
                                   max(1.0, float(int(min(nodes) // -(-actors // len(nodes))))))
    if actors * per_cpu > cpus or actors * per_gpu > gpus:
        raise ConfigError(f"{actors} actors x ({per_cpu:g} CPUs, {per_gpu:g} GPUs) do not fit the Ray cluster "
                          f"({cpus:g} CPUs, {gpus:g} GPUs): lower rank.ray.actors or the per-actor resources")
    return {"actors": actors, "gpus_per_actor": per_gpu, "cpus_per_actor": per_cpu}


def read_log(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Committed blocks: name -> summary (a torn last line from a killed driver is ignored)."""
    path = run_dir / BLOCKS_LOG
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[entry["name"]] = entry
    return out


def _cut_torn_log(run_dir: Path) -> None:
    """Drop a torn last commit line (a driver killed while appending it) before appending more."""
    path = run_dir / BLOCKS_LOG
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def _commit(run_dir: Path, parts: Path, row: dict[str, Any], output: str) -> dict[str, Any]:
    path = part_path(parts, row["name"], output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bytes(row["payload"]))
    os.replace(tmp, path)
    entry = {"name": row["name"], **json.loads(row["summary"])}
    with open(run_dir / BLOCKS_LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def actor_dtype(cfg: Config, gpus_per_actor: float) -> str:
    """`model.dtype` as the actors resolve it: "auto" is bf16 on GPU actors, fp32 on CPU ones (an
    actor whose GPU lacks bf16 refuses to rank rather than record a dtype it does not use)."""
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    return "bfloat16" if gpus_per_actor > 0 and cfg.model.device != "cpu" else "float32"


def rank_blocks(cfg: Config, source: blocks.Source, todo: list[blocks.Block], run_dir: Path, parts: Path,
                committed: dict[str, dict[str, Any]], make_scorer: ScorerFactory, size: dict[str, float],
                dtype: str, log=print) -> None:
    import ray

    log(f"ranking {sum(b.stop - b.start for b in todo)} users in {len(todo)} blocks on {size['actors']} Ray actors "
        f"({size['cpus_per_actor']:g} CPUs, {size['gpus_per_actor']:g} GPUs each)")
    light = dataclasses.replace(source, blocks=[])  # actors get the block they rank, not the whole plan
    with warnings.catch_warnings():  # actor restarts are still set this way before Ray 2.64 (see pyproject)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = ray.data.from_items([dataclasses.asdict(b) for b in todo]).map_batches(
            BlockRanker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=int(size["actors"])),
            num_cpus=size["cpus_per_actor"], num_gpus=size["gpus_per_actor"],
            max_restarts=RETRIES, max_task_retries=RETRIES,
            fn_constructor_kwargs={"cfg": cfg, "source": light, "make_scorer": make_scorer,
                                   "threads": int(size["cpus_per_actor"]), "dtype": dtype})
    done = sum(b.stop - b.start for b in source.blocks if b.name in committed)
    stop = runs.StopOnSignal()  # Ray's iterator may swallow a KeyboardInterrupt: the loop checks a flag
    with stop, tqdm(total=source.records, initial=done, unit="user", desc="rank", dynamic_ncols=True) as bar:
        for row in dataset.iter_rows():
            if row["error"]:
                kind, _, message = row["error"].partition(": ")
                raise (ConfigError if kind == "ConfigError" else DataError)(message)
            committed[row["name"]] = _commit(run_dir, parts, row, cfg.rank.ray.output)
            bar.update(int(row["records"]))
            if stop.requested:
                raise KeyboardInterrupt


def merge(source: blocks.Source, run_dir: Path, parts: Path, output: str) -> None:
    """Parts outside this job's blocks are deleted; jsonl parts are joined, in input order, into
    ranks.jsonl (written whole, then renamed, so a reader never sees half of it)."""
    keep = {part_path(parts, b.name, output).name for b in source.blocks}
    for p in parts.glob("part-*"):
        if p.name not in keep:
            p.unlink()
    if output != "jsonl":
        return
    tmp = run_dir / (runs.RANKS + ".tmp")
    with open(tmp, "wb") as f:
        f.writelines(part_path(parts, b.name, output).read_bytes() for b in source.blocks)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / runs.RANKS)


@dataclass
class RayResult:
    metrics: dict[str, float]
    users_ranked: int
    users_resumed: int
    skipped: dict[str, int]


def plan(cfg: Config, prepared: Prepared, log=print) -> blocks.Source:
    """The job's input planned in blocks (the driver reads it once, streaming)."""
    r = cfg.rank
    if r.input:
        path = Path(r.input)
        kind = blocks.kind_of(path, candidates=False)
    else:
        path, kind = prepared.candidates_path(r.candidates), "candidates"
    log(f"planning blocks of {r.ray.block_users} users over {path}")
    source = blocks.plan(path, kind, r.ray.block_users, r.users)
    if kind == "candidates" and source.meta["dataset_hash"] != prepared.split().dataset_hash:
        raise DataError(f"candidate file {path} was built on dataset {source.meta['dataset_hash']}, but the "
                        f"prepared split is {prepared.split().dataset_hash}; re-run `llmrec prepare`")
    return source


def run(cfg: Config, template, source: blocks.Source, writer_of: Callable[[str], runs.RunWriter], log=print,
        make_scorer: ScorerFactory | None = None) -> RayResult:
    """Rank `source` on Ray actors into the run directory of `writer_of(dtype)` (the run writer
    of `llmrec rank`, given the dtype the actors resolve `model.dtype` to)."""
    r = cfg.rank.ray
    connect(r.address, log)
    size = sizing(cfg)
    # dtype as the actors' device resolves it, not the driver's (which then never imports torch)
    writer = writer_of(actor_dtype(cfg, size["gpus_per_actor"]))
    run_dir = writer.run_dir
    parts = run_dir / PARTS[r.output]
    with writer:
        _cut_torn_log(run_dir)
        committed = {k: v for k, v in read_log(run_dir).items() if part_path(parts, k, r.output).is_file()}
        writer.check_resume(sum(v["users"] for v in committed.values()))
        todo = [b for b in source.blocks if b.name not in committed]
        resumed = sum(committed[b.name]["users"] for b in source.blocks if b.name in committed)
        if resumed:
            log(f"resuming {run_dir}: {len(source.blocks) - len(todo)} blocks ({resumed} users) already ranked, "
                f"{len(todo)} to go")
        parts.mkdir(parents=True, exist_ok=True)
        writer.start()
        started = time.time()
        if todo:
            rank_blocks(cfg, source, todo, run_dir, parts, committed, make_scorer or llm_scorer, size,
                        writer.settings["dtype"], log)
        elapsed = time.time() - started
        merge(source, run_dir, parts, r.output)
        mine = [committed[b.name] for b in source.blocks]
        skipped: dict[str, int] = {}
        for entry in mine:
            for what, n in entry["skipped"].items():
                skipped[what] = skipped.get(what, 0) + n
        metrics = metrics_of_sums(entry["sums"] for entry in mine)
        ranked_now = sum(committed[b.name]["users"] for b in todo)
        writer.finish(metrics, users=sum(e["users"] for e in mine), skipped=skipped, users_ranked_now=ranked_now,
                      seconds_now=round(elapsed, 2), **size,
                      users_per_second=round(ranked_now / elapsed, 3) if ranked_now and elapsed else None)
    return RayResult(metrics, ranked_now, resumed, skipped)
