"""The ranking service behind the HTTP routes: one loaded ranker, its data, a retriever, a batch queue.

The ranker is built from the config exactly as `llmrec rank` builds it (template, model, adapter,
backend, scoring, prompt budget, seed; data settings from the prepared folder), so a served score
equals the batch job's score for the same user, history and candidates. Requests become the
batch job's `UserQuery`: history entries are checked and cut to the last `split.history_len`
items like a `rank.input` line. Routes (and later modules, e.g. chat sessions) call `rank_query`
and `recommend` and never touch the model directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmrec.config import Config
from llmrec.data.dataset import Dataset, Interaction
from llmrec.data.prepared import open_prepared
from llmrec.data.queries import UserQuery
from llmrec.data.split import Split
from llmrec.errors import ConfigError
from llmrec.models.adapters import adapter_sha256
from llmrec.prompts.render import Template, load_template
from llmrec.scoring.rank import LLMRanker, Scored
from llmrec.serve import schemas
from llmrec.serve.batching import BatchQueue
from llmrec.serve.retrieval import Retriever, make_retriever
from llmrec.serve.schemas import RequestError

STAGE = "test"  # a served user's next item: the history is everything before the held-out test item


def build_ranker(cfg: Config, template: Template, dataset: Dataset, backend=None) -> LLMRanker:
    """The ranker `llmrec rank` builds for `cfg` (see `rank_users` in llmrec/recipes/rank.py),
    on `backend` if one is given (tests share a loaded model)."""
    from llmrec.backends import backend_from_config
    from llmrec.models.load import load_tokenizer

    if backend is None:
        backend = backend_from_config(cfg)
    if getattr(backend, "slots", None) is not None:
        backend.slots.set_stage(STAGE)
    return LLMRanker(template, backend, load_tokenizer(cfg.model.name), dataset, cfg.rank.scoring,
                     cfg.rank.max_prompt_tokens, cfg.rank.seed)


@dataclass
class Service:
    cfg: Config
    template: Template
    ranker: LLMRanker
    dataset: Dataset
    split: Split
    retriever: Retriever
    adapter_sha256: str = ""
    owns_backend: bool = True  # closed with the service (a backend handed in by the caller is not)
    queue: BatchQueue[UserQuery, Scored] | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: Config, log=print, backend=None) -> Service:
        """Load everything before the server binds its port: a bad setting fails at start, not per request."""
        template = load_template(cfg.rank.template)
        if cfg.model.adapter and not (Path(cfg.model.adapter) / "adapter_config.json").is_file():
            raise ConfigError(f"model.adapter: {cfg.model.adapter} is not a peft adapter folder (no "
                              "adapter_config.json); `llmrec train` writes one to <train.out>/best")
        if template.uses_cf and not (cfg.model.adapter and (Path(cfg.model.adapter) / "cf.json").is_file()):
            raise ConfigError(f"{template.name} places collaborative vectors (| cf): serve it with model.adapter "
                              "set to an adapter trained on it")
        prepared = open_prepared(cfg, log)
        cfg = prepared.cfg
        dataset = prepared.dataset(log)
        split = prepared.split()
        retriever = make_retriever(cfg.serve.retriever, split, dataset)
        ranker = build_ranker(cfg, template, dataset, backend)
        sha = adapter_sha256(cfg.model.adapter) if cfg.model.adapter else ""
        return cls(cfg, template, ranker, dataset, split, retriever, sha, owns_backend=backend is None)

    # -- lifecycle (inside the server's event loop) --------------------------------------------
    def start(self) -> None:
        s = self.cfg.serve
        self.queue = BatchQueue(self.ranker.score, s.max_batch, s.max_wait_ms, s.max_queue)

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.close()
        if self.owns_backend:
            self.ranker.backend.close()

    # -- requests -> queries -------------------------------------------------------------------
    def _history(self, user_id: str | None, history: list | None) -> tuple[list[Interaction], list[str]]:
        """The prompt's history (last split.history_len items) and every item id the user has seen."""
        s = self.cfg.serve
        if history is None:
            if user_id is None:
                raise RequestError(422, "history", "send a history, or a user_id of the prepared split")
            if user_id not in self.split.users:
                raise RequestError(404, "user_id", f"unknown user {user_id!r} (not in the prepared split "
                                                   f"{self.cfg.out_dir}); send the history instead")
            seq = self.split.users[user_id]
            return (seq.events(self.dataset, STAGE, self.cfg.split.history_len), list(seq.history(STAGE)))
        if not history:
            raise RequestError(422, "history", "is empty; a ranked user needs at least one item")
        if len(history) > s.max_history:
            raise RequestError(413, "history", f"{len(history)} items; at most serve.max_history = {s.max_history}")
        events, seen = [], []
        for k, h in enumerate(history):
            h = h if isinstance(h, schemas.HistoryItem) else schemas.HistoryItem(item_id=h)
            if h.item_id not in self.dataset.items:
                raise RequestError(422, f"history[{k}]", f"unknown item id {h.item_id!r}")
            for key in ("rating", "timestamp"):
                value = getattr(h, key)
                if value is not None and not math.isfinite(value):
                    raise RequestError(422, f"history[{k}].{key}", f"expected a finite number, got {value}")
            seen.append(h.item_id)
            events.append(Interaction(self.dataset.items[h.item_id], math.nan if h.rating is None else h.rating,
                                      math.nan if h.timestamp is None else h.timestamp))
        return events[-self.cfg.split.history_len:], seen

    def _candidates(self, candidates: Sequence[str]) -> list[str]:
        s = self.cfg.serve
        if not candidates:
            raise RequestError(422, "candidates", "is empty; send at least one item id")
        if len(candidates) > s.max_candidates:
            raise RequestError(413, "candidates", f"{len(candidates)} items; at most serve.max_candidates = "
                                                  f"{s.max_candidates}")
        seen: set[str] = set()
        for k, c in enumerate(candidates):
            if c not in self.dataset.items:
                raise RequestError(422, f"candidates[{k}]", f"unknown item id {c!r}")
            if c in seen:
                raise RequestError(422, f"candidates[{k}]", f"item {c!r} is listed twice")
            seen.add(c)
        return list(candidates)

    async def rank_query(self, query: UserQuery) -> Scored:
        """Score one query through the batch queue (with any other queries waiting)."""
        assert self.queue is not None, "start() the service inside the server's event loop first"
        return await self.queue.submit(query)

    async def rank(self, req: schemas.RankRequest) -> schemas.RankResponse:
        history, _ = self._history(req.user_id, req.history)
        candidates = self._candidates(req.candidates)
        scored = await self.rank_query(UserQuery(req.user_id or "", history, candidates))
        order = np.argsort(-scored.scores, kind="stable")
        return schemas.RankResponse(user_id=req.user_id, scores=[_json_float(x) for x in scored.scores],
                                    ranking=[candidates[k] for k in order], history_used=len(history) - scored.dropped,
                                    dropped_history=scored.dropped, prompt_tokens=scored.prompt_tokens)

    async def recommend(self, req: schemas.RecommendRequest) -> schemas.RecommendResponse:
        s = self.cfg.serve
        k = req.k if req.k is not None else min(10, s.retrieve)
        if k > s.retrieve:
            raise RequestError(422, "k", f"{k}; at most serve.retrieve = {s.retrieve} (the retriever's list "
                                         "the LLM reranks)")
        history, seen = self._history(req.user_id, req.history)
        found = self.retriever.retrieve(req.user_id, seen, s.retrieve)
        if not found:
            raise RequestError(422, "history", f"the retriever ({self.retriever.name}) knows neither this user_id "
                                               "nor any of the history's items")
        candidates = [i for i, _ in found]
        scored = await self.rank_query(UserQuery(req.user_id or "", history, candidates))
        order = np.argsort(-scored.scores, kind="stable")[:k]
        items = [schemas.Recommendation(item_id=candidates[k], title=self.dataset.items[candidates[k]].title,
                                        score=_json_float(scored.scores[k]), retriever_score=found[k][1])
                 for k in order]
        return schemas.RecommendResponse(user_id=req.user_id, retriever=self.retriever.name, items=items)

    def health(self) -> schemas.Health:
        q = self.queue
        return schemas.Health(
            status="ok", model=self.cfg.model.name, adapter=self.cfg.model.adapter, adapter_sha256=self.adapter_sha256,
            template=self.template.name, template_sha256=self.template.sha256, backend=self.cfg.rank.backend,
            scoring=self.cfg.rank.scoring, retriever=self.retriever.name, dataset=self.split.dataset_hash,
            items=len(self.dataset.items), queue_depth=q.depth if q else 0, in_flight=q.in_flight if q else 0,
            max_batch=self.cfg.serve.max_batch,
            batches={str(k): v for k, v in sorted(q.batch_sizes.items())} if q else {})


def _json_float(x: float) -> float | None:
    """JSON has no NaN or infinity: such a score is null."""
    x = float(x)
    return x if math.isfinite(x) else None
