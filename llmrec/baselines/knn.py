"""Neighbourhood collaborative filtering on binary training interactions.

Item-KNN (Sarwar et al., 2001; Deshpande & Karypis, 2004): cosine similarity between item
columns, shrunk by `shrink` (sim = dot / (|a||b| + shrink)) so that pairs with little support
count less, each item keeping its `neighbours` most similar items; a user's score for item j is
the sum of sim(j, h) over their history h. User-KNN is the same on user rows: the score is the
similarity-weighted vote of the user's `neighbours` most similar users.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from llmrec.baselines import TrainData
from llmrec.errors import ConfigError


def cosine_topk(x: sp.csr_matrix, shrink: float, k: int) -> sp.csr_matrix:
    """Row-row cosine similarity of `x` with shrinkage, top-k per row, zero diagonal."""
    norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    dots = (x @ x.T).toarray().astype(np.float64)
    sim = dots / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(sim, 0.0)
    if 0 < k < sim.shape[1]:
        drop = np.argpartition(-sim, k, axis=1)[:, k:]
        np.put_along_axis(sim, drop, 0.0, axis=1)
    return sp.csr_matrix(sim)


class _KNN:
    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        if neighbours < 1 or shrink < 0:
            raise ConfigError(f"knn: neighbours must be >= 1 and shrink >= 0; got {neighbours}, {shrink}")
        self.neighbours, self.shrink = neighbours, shrink
        self.sim: sp.csr_matrix | None = None
        self.data: TrainData | None = None

    def vectors(self) -> None:
        return None  # neighbourhood models have no user or item vectors


class ItemKNN(_KNN):
    name = "item-knn"

    def fit(self, data: TrainData) -> ItemKNN:
        self.data = data
        self.sim = cosine_topk(data.binary.T.tocsr(), self.shrink, self.neighbours)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.sim is not None and self.data is not None, "fit first"
        return (self.data.binary[users] @ self.sim.T).toarray()


class UserKNN(_KNN):
    name = "user-knn"

    def fit(self, data: TrainData) -> UserKNN:
        self.data = data
        self.sim = cosine_topk(data.binary, self.shrink, self.neighbours)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.sim is not None and self.data is not None, "fit first"
        return (self.sim[users] @ self.data.binary).toarray()
