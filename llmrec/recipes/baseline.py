"""`llmrec baseline`: fit a classic recommender on the training split and score candidate files.

Each candidate file gets a run directory `<out_dir>/baselines/<name>--<label>` in the same format
as LLM runs, so `llmrec compare` treats both alike, plus the model's learned user and item
vectors (`vectors.npz`, see `llmrec/baselines/vectors.py`) where it has them. With `baseline.retrieve = N` the model's top-N
unseen items per user are also saved as `candidates/retrieved-N.<stage>.jsonl` (two-stage
evaluation as in LlamaRec): the held-out item is in a list only if the retriever found it, and a
user it missed is recorded as a miss for every reranker of that file.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrec import baselines
from llmrec.config import Config, dump_toml
from llmrec.data.candidates import CandidateList, CandidateSet
from llmrec.data.prepared import open_prepared
from llmrec.data.split import Split
from llmrec.eval import runs
from llmrec.eval.metrics import metrics_of_rows


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


def run(cfg: Config, log=print) -> BaselineResult:
    prepared = open_prepared(cfg, log)
    cfg, out = prepared.cfg, prepared.out_dir
    b = cfg.baseline
    split = prepared.split()
    data = baselines.TrainData.from_split(split)
    model, settings = baselines.from_config(b)
    if hasattr(model, "use_data"):  # models that read side data beyond the interactions (a knowledge graph)
        model.use_data(cfg.data)
    if hasattr(model, "use_model"):  # models that encode item text with the configured LM (content-lm)
        model.use_model(cfg.model)
    started = time.time()
    model.fit(data)
    fit_seconds = time.time() - started
    log(f"fitted {b.name} in {fit_seconds:.1f}s" + (f" (best epoch {model.best_epoch})" if hasattr(model, "best_epoch") else ""))
    if getattr(model, "selected", None):  # choices a model made on the validation items
        log(f"{b.name} chose on the validation items: {model.selected}")

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

    for label in b.candidates:
        path, cs = prepared.candidates(label)
        run_dir = out / "baselines" / f"{b.name}--{path.name.removesuffix('.jsonl')}"
        with runs.RunLock(run_dir):
            (run_dir / runs.RANKS).unlink(missing_ok=True)  # a baseline run is cheap: always rewritten whole
            rows = []
            users = np.array([data.user_index[c.user_id] for c in cs.lists])
            for start in range(0, len(users), 512):
                chunk = cs.lists[start:start + 512]
                scores = baselines.scores_of(model, data, users[start:start + 512], cs.stage)
                for c, s_all in zip(chunk, scores):
                    s = np.array([s_all[data.item_index[i]] if i in data.item_index else -np.inf for i in c.candidates])
                    rows.append(runs.rank_row(c.user_id, list(c.candidates), s, c.positive, b.top_k,
                                              c.missed is not None))
            runs.append_ranks(run_dir, rows)
            if vectors is not None:
                vectors.save(run_dir)
            metrics = metrics_of_rows(rows)
            runs.write_json(run_dir / "metrics.json", metrics)
            (run_dir / "config.toml").write_text(dump_toml(cfg))
            runs.write_json(run_dir / runs.RUN, {
                "settings": {"kind": "baseline", "model": b.name, **settings, "source": str(path),
                             "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                             "dataset_hash": split.dataset_hash},
                "git_commit": runs.git_commit(), "finished": True, "users": len(rows),
                "fit_seconds": round(fit_seconds, 2), "best_epoch": getattr(model, "best_epoch", None),
                **({"selected": model.selected} if getattr(model, "selected", None) else {}),
                "valid_ndcg10_history": [round(x, 5) for x in getattr(model, "history", [])]})
        result.run_dirs.append(run_dir)
        result.metrics[cs.label + "." + cs.stage] = metrics
        log(f"{b.name} on {path.name}: " + ", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return result
