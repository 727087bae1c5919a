"""`llmrec baseline`: fit a classic recommender on the training split and score candidate files.

Each candidate file gets a run directory `<out_dir>/baselines/<name>--<label>` in the same format
as LLM runs, so `llmrec compare` treats both alike, plus the model's learned user and item
vectors (`vectors.npz`, see `llmrec/baselines/vectors.py`) where it has them. With `baseline.retrieve = N` the model's top-N
unseen items per user are also saved as `candidates/retrieved-N.<stage>.jsonl` (two-stage
evaluation as in LlamaRec): the held-out item is in a list only if the retriever found it, and a
user it missed is recorded as a miss for every reranker of that file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrec import baselines
from llmrec.assets import sha256_file
from llmrec.config import Config, dump_toml
from llmrec.data.candidates import CandidateList, CandidateSet
from llmrec.data.prepared import open_prepared
from llmrec.data.split import Split
from llmrec.eval import runs
from llmrec.eval.metrics import metrics_of_rows
from llmrec.registry import BASELINES


@dataclass
class BaselineResult:
    run_dirs: list[Path]
    metrics: dict[str, dict[str, float]]  # candidate label -> metrics
    fit_seconds: float
    retrieved: Path | None = None
    retriever_recall: float | None = None


def retrieve(model: baselines.Recommender, data: baselines.TrainData, split: Split, n: int, stage: str,
             seed: int) -> CandidateSet:
    """Top-n items per user among those not in the user's history for `stage`."""
    cs = CandidateSet("retrieved", n, seed, stage, split.dataset_hash)
    for start in range(0, len(data.users), 512):
        users = np.arange(start, min(start + 512, len(data.users)))
        scores = baselines.scores_of(model, data, users, stage)
        for row, u in enumerate(users):
            seq = split[data.users[u]]
            s = scores[row]
            s[[data.item_index[i] for i in seq.history(stage)]] = -np.inf
            top = np.argsort(-s, kind="stable")[:n]
            items = tuple(data.items[k] for k in top)
            target = seq.target(stage)
            found = target in items
            cs.lists.append(CandidateList(seq.user_id, target if found else None, items, None if found else target))
    return cs


def rerun(cfg: Config, run_dir: Path, source: Path, out: Path) -> dict[str, str]:
    """How this run is recreated, and run on other candidates with every candidate written (the
    saved config may rewrite candidates/retrieved-N.test.jsonl, which other runs scored: retrieve=0)."""
    config = str(run_dir / "config.toml")
    on = "{label}" if source.parent == out / "candidates" else str(source.parent / "{label}.jsonl")
    return runs.rerun_record(
        ["llmrec", "baseline", "--config", config, f"baseline.candidates={json.dumps([source.name.removesuffix('.jsonl')])}"],
        ["llmrec", "baseline", "--config", config, f"baseline.candidates={json.dumps([on])}", "baseline.retrieve=0",
         "baseline.top_k=0"],
        str(out / "baselines" / f"{cfg.baseline.name}--{{label}}"))


def idle_cores() -> int:
    """The cores not busy over the last minute (cores minus the 1-minute load average), at least 1."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform: assume a quiet machine
        busy = 0.0
    return max(1, min(cores, cores - round(busy)))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` (0: the idle cores) for the block, then restored. The
    baselines' tensors are small: every core helps on a quiet CPU, but on a shared one each extra
    thread waits for a core and a fit can take several times longer (scripts/bench_threads.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n or idle_cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(cfg: Config, log=print) -> BaselineResult:
    with torch_threads(cfg.baseline.threads):
        return _run(cfg, log)


def _run(cfg: Config, log=print) -> BaselineResult:
    prepared = open_prepared(cfg, log)
    cfg, out = prepared.cfg, prepared.out_dir
    b = cfg.baseline
    split = prepared.split()
    data = baselines.TrainData.from_split(split)
    model, settings = baselines.from_config(b)
    reads = BASELINES.entry(b.name).capabilities.get("reads", ())
    if "data" in reads:  # side data beyond the interactions (a knowledge graph, item text)
        model.use_data(cfg.data)
    if "model" in reads:  # item text encoded by the configured LM (content-lm)
        model.use_model(cfg.model)
    log(f"baseline: fitting {b.name} ({', '.join(f'{k}={v}' for k, v in settings.items()) or 'no settings'}) on "
        f"{len(data.users)} users, {len(data.items)} items")
    started = time.time()
    model.fit(data)
    fit_seconds = time.time() - started
    best_epoch = getattr(model, "best_epoch", None)  # trained models report their early-stopped epoch
    selected = getattr(model, "selected", None)  # choices a model made on the validation items
    log(f"fitted {b.name} in {fit_seconds:.1f}s" + (f" (best epoch {best_epoch})" if best_epoch else ""))
    if selected:
        log(f"{b.name} chose on the validation items: {selected}")

    vectors = model.vectors()
    result = BaselineResult([], {}, fit_seconds)
    if b.retrieve:
        cs = retrieve(model, data, split, b.retrieve, "test", b.seed)
        path = out / "candidates" / f"{b.retrieve_label or f'retrieved-{b.retrieve}'}.test.jsonl"
        cs.save(path)
        result.retrieved = path
        result.retriever_recall = float(np.mean([c.positive is not None for c in cs.lists]))
        log(f"wrote {path}: the held-out item is in the top {b.retrieve} for "
            f"{result.retriever_recall:.1%} of {len(cs.lists)} users")

    config_toml = dump_toml(dataclasses.replace(cfg, baseline=b.resolved()))
    for label in b.candidates:
        path, cs = prepared.candidates(label)
        run_dir = out / "baselines" / f"{b.name}--{path.name.removesuffix('.jsonl')}"
        run_settings = {"kind": "baseline", "model": b.name, **settings, "source": str(path),
                        "source_sha256": sha256_file(path), "dataset_hash": split.dataset_hash}
        with runs.RunWriter(run_dir, run_settings, config_toml, rerun(cfg, run_dir, path, out), rewrite=True) as w:
            rows = score_file(model, data, cs, b.top_k)
            w.start()
            w.append(rows)
            if vectors is not None:
                vectors.save(run_dir)
            metrics = metrics_of_rows(rows)
            w.finish(metrics, users=len(rows), fit_seconds=round(fit_seconds, 2), best_epoch=best_epoch,
                     **({"selected": selected} if selected else {}),
                     valid_ndcg10_history=[round(x, 5) for x in getattr(model, "history", [])])
        result.run_dirs.append(run_dir)
        result.metrics[cs.label + "." + cs.stage] = metrics
        log(f"{b.name} on {path.name}: " + ", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
        log(f"run directory: {run_dir}")
    return result


def score_file(model: baselines.Recommender, data: baselines.TrainData, cs: CandidateSet,
               top_k: int) -> list[dict]:
    """Rows of one candidate file: every candidate's score (an item unseen in training: -inf)."""
    rows = []
    users = np.array([data.user_index[c.user_id] for c in cs.lists])
    for start in range(0, len(users), 512):
        chunk = cs.lists[start:start + 512]
        scores = baselines.scores_of(model, data, users[start:start + 512], cs.stage)
        for c, s_all in zip(chunk, scores):
            s = np.array([s_all[data.item_index[i]] if i in data.item_index else -np.inf for i in c.candidates])
            rows.append(runs.rank_row(c.user_id, list(c.candidates), s, c.positive, top_k, c.missed is not None,
                                      c.more))
    return rows
