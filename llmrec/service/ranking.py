"""The ranking service: one loaded ranker, its data, a retriever, a batch queue (no HTTP).

The ranker is built from the config exactly as `llmrec rank` builds it (template, model, adapter,
backend, scoring, prompt budget, seed; data settings from the prepared folder), so a served score
equals the batch job's score for the same user, history and candidates. Requests become the
batch job's `UserQuery`: history entries are checked (known ids, finite ratings, timestamps a
date can be made of: `timestamp_problem`) and cut to the last `split.history_len` items like a
`rank.input` line. Routes (and later modules, e.g. chat sessions) call `rank_query`
and `recommend` and never touch the model directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from llmrec.config import Config
from llmrec.data.dataset import Dataset, Interaction, timestamp_problem
from llmrec.data.prepared import open_prepared
from llmrec.data.queries import UserQuery
from llmrec.data.split import Split
from llmrec.errors import ConfigError, RequestError
from llmrec.models.adapters import adapter_sha256
from llmrec.prompts.render import Template, load_template
from llmrec.registry import STYLES
from llmrec.scoring.build import build_ranker, check_adapter
from llmrec.scoring.rank import LLMRanker, Scored
from llmrec.service import schemas
from llmrec.service.batching import BatchQueue
from llmrec.service.retrieval import GenerativeRetriever, Retriever, make_retriever


@dataclass(frozen=True)
class Generate:
    """A queued generation: the top `k` of `query.candidates` by beam search with `beams` beams."""

    query: UserQuery
    k: int
    beams: int


STAGE = "test"  # a served user's next item: the history is everything before the held-out test item


@dataclass
class Service:
    cfg: Config
    template: Template
    ranker: LLMRanker
    dataset: Dataset
    split: Split
    retriever: Retriever
    adapter_sha256: str = ""
    queue: BatchQueue[UserQuery, Scored] | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: Config, log=print, backend=None) -> Service:
        """Load everything before the server binds its port: a bad setting fails at start, not per
        request. `backend`: an already loaded one to share (the caller keeps and closes it)."""
        template = load_template(cfg.rank.template)
        check_adapter(cfg, template, log)
        prepared = open_prepared(cfg, log)
        cfg = prepared.cfg
        dataset = prepared.dataset(log)
        split = prepared.split()
        retriever = make_retriever(cfg.serve.retriever, split, dataset)
        if isinstance(retriever, GenerativeRetriever) and not STYLES.entry(template.style).capabilities.get("generates"):
            raise ConfigError(f"serve.retriever=generate: {template.name} is {template.style} style, which scores "
                              "a given list and cannot generate items; serve a title or sid style template")
        ranker = build_ranker(cfg, template, dataset, STAGE, backend)
        sha = adapter_sha256(cfg.model.adapter) if cfg.model.adapter else ""
        return cls(cfg, template, ranker, dataset, split, retriever, sha)

    # -- lifecycle (inside the server's event loop) --------------------------------------------
    def start(self) -> None:
        s = self.cfg.serve
        self.queue = BatchQueue(self._run, s.max_batch, s.max_wait_ms, s.max_queue)

    def _run(self, batch: list) -> list[Scored]:
        """In the queue's worker: a batch of queries to score and of generations (`Generate`), each
        kind in one ranker call."""
        out: list[Scored | None] = [None] * len(batch)
        scores = [k for k, q in enumerate(batch) if not isinstance(q, Generate)]
        for k, s in zip(scores, self.ranker.score([batch[k] for k in scores]) if scores else []):
            out[k] = s
        for k, q in enumerate(batch):
            if isinstance(q, Generate):
                (out[k],) = self.ranker.generate([q.query], q.k, q.beams)
        return out  # type: ignore[return-value]

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.close()
        self.ranker.close()  # closes the backend only if the ranker built it

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
            if h.rating is not None and not math.isfinite(h.rating):
                raise RequestError(422, f"history[{k}].rating", f"expected a finite number, got {h.rating}")
            # a millisecond timestamp is finite but names no date: the prompt could not show it
            if h.timestamp is not None and (problem := timestamp_problem(h.timestamp)):
                raise RequestError(422, f"history[{k}].timestamp", problem)
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
        if isinstance(self.retriever, GenerativeRetriever):
            return await self._generated(req, history, seen, k)
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

    async def _generated(self, req: schemas.RecommendRequest, history: list[Interaction], seen: list[str],
                         k: int) -> schemas.RecommendResponse:
        """The top k the LLM generates over the catalogue outside the history (`serve.beams` beams)."""
        banned = set(seen)
        query = UserQuery(req.user_id or "", history, [i for i in self.dataset.items if i not in banned])
        assert self.queue is not None, "start() the service inside the server's event loop first"
        scored = await self.queue.submit(Generate(query, k, max(self.cfg.serve.beams, k)))
        items = [schemas.Recommendation(item_id=i, title=self.dataset.items[i].title, score=_json_float(x),
                                        retriever_score=float(x)) for i, x in zip(scored.candidates, scored.scores)]
        return schemas.RecommendResponse(user_id=req.user_id, retriever="generate", items=items)

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
