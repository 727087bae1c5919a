"""Personalised PageRank over the user-item-entity graph (`kg-ppr`).

A random walk with restart (Page et al. 1999; Haveliwala 2002; on KG-joined interaction graphs
e.g. Catherine & Cohen 2016): from a node the walker follows a uniformly chosen edge, and with
probability `alpha` jumps back to one of the user's history items. An item's score is its
stationary probability, r = alpha * s + (1 - alpha) * P r with P the column-normalised adjacency
and s uniform over the history. The graph holds the training interactions (user-item edges) and
the KG (item-entity and item-item edges); the walk starts from `TrainData.history(user, stage)`:
the training items when scoring the validation item, plus the validation item when scoring the
test item, as SASRec reads its input. Items without any KG fact are still reached through the
users who watched them; items with neither are never reached (score 0).

Defaults chosen on the validation items of ML-100K (full-ranking NDCG@10): alpha 0.1 0.049, 0.3
0.061, 0.5 0.061, 0.7 0.058; KG edges weighted 0.3 or 0.1 of an interaction instead of 1: 0.058.

Power iteration on all users of a batch at once: `epochs` sparse x dense products, the error
shrinks by (1 - alpha) per step (0.7^30 ~ 2e-5 with the defaults).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from llmrec.baselines import TrainData
from llmrec.errors import ConfigError
from llmrec.kg.base import KGModel
from llmrec.kg.graph import KnowledgeGraph, adjacency


class KGPageRank(KGModel):
    name = "kg-ppr"

    def __init__(self, alpha: float = 0.3, epochs: int = 30, batch_size: int = 256, kg: str = "",
                 graph: KnowledgeGraph | None = None, kg_weight: float = 1.0) -> None:
        """alpha: restart probability; epochs: power iterations; kg: a triple file (default: the
        dataset's own KG); kg_weight: weight of a KG edge relative to an interaction edge."""
        if not 0 < alpha < 1:
            raise ConfigError(f"kg-ppr: baseline.kg-ppr.alpha (restart probability) must be in (0, 1); got {alpha}")
        if kg_weight <= 0:
            raise ConfigError(f"kg-ppr: kg_weight must be > 0; got {kg_weight}")
        self.alpha, self.epochs, self.batch_size = alpha, epochs, batch_size
        self.kg, self.graph, self.kg_weight = kg, graph, kg_weight
        self.transition: sp.csr_matrix | None = None
        self.data: TrainData | None = None

    def fit(self, data: TrainData) -> KGPageRank:
        self.data = data
        a = adjacency(data.binary, self.knowledge_graph(data.items), self.kg_weight)
        deg = np.asarray(a.sum(0)).ravel()
        inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
        self.transition = (a @ sp.diags(inv)).tocsr()  # column-stochastic where a node has edges
        return self

    def restart(self, users: np.ndarray, stage: str) -> np.ndarray:
        """nodes x users: uniform over each user's history items for `stage`."""
        assert self.data is not None and self.transition is not None, "fit first"
        d, n_u = self.data, len(self.data.users)
        s = np.zeros((self.transition.shape[0], len(users)))
        for col, u in enumerate(users):
            h = np.unique(d.history(int(u), stage))
            if len(h):
                s[n_u + h, col] = 1.0 / len(h)
        return s

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.data is not None and self.transition is not None, "fit first"
        n_u, n_i = len(self.data.users), len(self.data.items)
        out = np.empty((len(users), n_i))
        for start in range(0, len(users), self.batch_size):
            s = self.restart(users[start:start + self.batch_size], stage)
            r = s.copy()
            for _ in range(self.epochs):
                r = self.alpha * s + (1 - self.alpha) * (self.transition @ r)
            out[start:start + s.shape[1]] = r[n_u:n_u + n_i].T
        return out

    def vectors(self) -> None:
        return None  # a walk on a graph: no user or item vectors
