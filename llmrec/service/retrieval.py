"""Candidate retrieval for /v1/recommend: the first stage of retrieve-then-rerank (LlamaRec).

The LLM ranker scores a short list; a cheap model picks that list from the whole catalogue.
`serve.retriever` names it (or `generate`: the LLM generates its own list, `GenerativeRetriever`):

- `pop`: training interaction counts of the prepared split (what `llmrec baseline --name pop`
  scores), the same list for everyone; ties in id order.
- a baseline run directory (or its `vectors.npz`) of a model whose dot product is its score
  (`exact`: bpr, mf, als, sasrec): score = user vector . item vector + item bias. A user_id the
  run knows uses its vector (fitted on that user's training history, whatever history the
  request sends); otherwise the mean of the history items' vectors stands in for the user
  (a fold-in approximation, not the model's own score).

Items in the user's history are never retrieved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from llmrec.baselines.vectors import FILENAME, Vectors
from llmrec.data.dataset import Dataset
from llmrec.data.split import Split, natural_key, train_item_counts
from llmrec.errors import ConfigError
from llmrec.eval.runs import RUN, load_run


class Retriever(Protocol):
    name: str

    def retrieve(self, user_id: str | None, history: Sequence[str], n: int) -> list[tuple[str, float]]:
        """Up to `n` (item id, retriever score) pairs, best first, none of them in `history`;
        empty when the retriever has nothing to go on for this user."""
        ...


class PopularityRetriever:
    name = "pop"

    def __init__(self, split: Split, dataset: Dataset) -> None:
        items = sorted(dataset.items, key=natural_key)
        counts = train_item_counts(split, items)
        order = np.argsort(-counts, kind="stable")  # ties keep id order
        self.ranked = [(items[k], float(counts[k])) for k in order]

    def retrieve(self, user_id: str | None, history: Sequence[str], n: int) -> list[tuple[str, float]]:
        seen = set(history)
        out = []
        for item, count in self.ranked:
            if item not in seen:
                out.append((item, count))
                if len(out) == n:
                    break
        return out


class VectorsRetriever:
    def __init__(self, vectors: Vectors, dataset: Dataset) -> None:
        self.name = vectors.model
        self.vectors = vectors
        self.user_row = {u: k for k, u in enumerate(vectors.user_ids)}
        self.item_row = {i: k for k, i in enumerate(vectors.item_ids)}
        self.known = np.array([i in dataset.items for i in vectors.item_ids])  # only items the ranker can show

    def retrieve(self, user_id: str | None, history: Sequence[str], n: int) -> list[tuple[str, float]]:
        v = self.vectors
        if user_id is not None and user_id in self.user_row:
            query = v.user_vectors[self.user_row[user_id]]
        else:
            rows = [self.item_row[i] for i in history if i in self.item_row]
            if not rows:
                return []
            query = v.item_vectors[rows].mean(0)
        scores = v.item_vectors @ query + v.item_bias
        scores = np.where(self.known, scores.astype(np.float64), -np.inf)
        for i in history:
            if i in self.item_row:
                scores[self.item_row[i]] = -np.inf
        order = np.argsort(-scores, kind="stable")[:n]
        return [(v.item_ids[k], float(scores[k])) for k in order if np.isfinite(scores[k])]


class GenerativeRetriever:
    """`generate`: no first stage; the LLM generates the items itself (beam search over the whole
    catalogue's token trie, `Service.recommend`). Only title and sid templates generate."""

    name = "generate"

    def retrieve(self, user_id: str | None, history: Sequence[str], n: int) -> list[tuple[str, float]]:
        raise NotImplementedError("the generate retriever is the ranker's own beam search")


def make_retriever(spec: str, split: Split, dataset: Dataset) -> Retriever:
    """`serve.retriever`: `pop`, `generate`, or a baseline run directory / vectors.npz from the same
    prepared data."""
    if spec == "pop":
        return PopularityRetriever(split, dataset)
    if spec == "generate":
        return GenerativeRetriever()
    path = Path(spec)
    if not path.exists():
        raise ConfigError(f"serve.retriever: {spec!r} is neither 'pop' nor an existing baseline run directory "
                          f"(e.g. runs/ml-100k/baselines/bpr--sampled-20.test, which holds {FILENAME})")
    vectors = Vectors.load(path)
    if not vectors.exact:
        raise ConfigError(f"serve.retriever: {spec} holds {vectors.model} vectors whose dot product is not the "
                          "model's score (exact = false); use a bpr, mf, als or sasrec run, or pop")
    run_dir = path if path.is_dir() else path.parent
    if (run_dir / RUN).is_file():
        recorded = load_run(run_dir).get("settings", {}).get("dataset_hash")
        if recorded and recorded != split.dataset_hash:
            raise ConfigError(f"serve.retriever: {run_dir} was fitted on other data (dataset {recorded}, the "
                              f"prepared split has {split.dataset_hash})")
    return VectorsRetriever(vectors, dataset)
