"""EASE^R (Steck, 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

An item-item weight matrix B with a zero diagonal, fitted in closed form to reconstruct the
binary user x item matrix X: with P = (X^T X + lambda I)^-1, B = I - P diag(1 / diag(P)). A user's
scores are x_u B. One regularisation weight (`weight_decay`, lambda); the default was chosen on the
validation items (`scripts/tune_baselines.py`). Items x items in memory: fine for catalogues of up
to some ten thousand items.
"""

from __future__ import annotations

import numpy as np

from llmrec.baselines import TrainData
from llmrec.errors import ConfigError


class EASE:
    name = "ease"

    def __init__(self, weight_decay: float = 100.0) -> None:
        if weight_decay <= 0:
            raise ConfigError(f"ease: baseline.ease.weight_decay (lambda) must be > 0; got {weight_decay}")
        self.weight_decay = weight_decay
        self.B: np.ndarray | None = None
        self.data: TrainData | None = None

    def fit(self, data: TrainData) -> EASE:
        self.data = data
        x = data.binary.astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += self.weight_decay
        p = np.linalg.inv(gram)
        self.B = -p / np.diag(p)[None, :]
        np.fill_diagonal(self.B, 0.0)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.B is not None and self.data is not None, "fit first"
        return np.asarray(self.data.binary[users] @ self.B)

    def vectors(self) -> None:
        return None  # an item-item model: no user or item vectors
