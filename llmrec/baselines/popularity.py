"""Most-popular: score = number of training interactions of the item (same for every user)."""

from __future__ import annotations

import numpy as np

from llmrec.baselines import TrainData


class Popularity:
    name = "pop"

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, data: TrainData) -> Popularity:
        self.counts = np.asarray(data.binary.sum(0)).ravel().astype(np.float64)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.counts is not None, "fit first"
        return np.tile(self.counts, (len(users), 1))

    def vectors(self) -> None:
        return None
