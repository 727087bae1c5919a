"""Implicit-feedback ALS (Hu, Koren & Volinsky, 2008, "Collaborative Filtering for Implicit
Feedback Datasets"), on the `implicit` library's solver.

Every user-item cell is a preference p_ui (1 for a training interaction, else 0) with confidence
c_ui = 1 + alpha * r_ui, and the factors minimise sum c_ui (p_ui - x_u . y_i)^2 + lambda (|x|^2 + |y|^2)
by alternating least squares. The solver is `implicit`'s conjugate-gradient ALS (Takacs et al.,
2011), a well-kept Cython/OpenMP implementation. Each iteration is followed by validation NDCG@10;
the best iteration's factors are kept and training stops after `patience` iterations without a
gain. Defaults were chosen on the validation items (`scripts/tune_baselines.py`).
"""

from __future__ import annotations

import numpy as np

from llmrec.baselines import TrainData
from llmrec.baselines.training import fit_implicit_early_stopped
from llmrec.baselines.vectors import Vectors
from llmrec.errors import ConfigError


class ALS:
    name = "als"

    def __init__(self, embedding_size: int = 64, epochs: int = 30, weight_decay: float = 0.01, alpha: float = 5.0,
                 patience: int = 3, seed: int = 0) -> None:
        if embedding_size < 1 or epochs < 1 or patience < 1 or alpha <= 0 or weight_decay < 0:
            raise ConfigError("als: embedding_size, epochs and patience must be >= 1, alpha > 0, weight_decay >= 0")
        self.embedding_size, self.epochs, self.weight_decay = embedding_size, epochs, weight_decay
        self.alpha, self.patience, self.seed = alpha, patience, seed
        self.history: list[float] = []
        self.best_epoch = 0
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.data: TrainData | None = None

    def fit(self, data: TrainData) -> ALS:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ConfigError("baseline.name=als needs the implicit package (pip install implicit)") from e
        self.data = data
        model = AlternatingLeastSquares(factors=self.embedding_size, regularization=self.weight_decay,
                                        alpha=self.alpha, iterations=self.epochs, random_state=self.seed,
                                        calculate_training_loss=False)
        fit_implicit_early_stopped(self, data, model, epochs=self.epochs, patience=self.patience)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.user_factors is not None and self.item_factors is not None, "fit first"
        return self.user_factors[users] @ self.item_factors.T

    def vectors(self) -> Vectors:
        assert self.user_factors is not None and self.data is not None, "fit first"
        return Vectors(self.name, self.data.users, self.data.items, self.user_factors, self.item_factors,
                       np.zeros(len(self.data.items), dtype=np.float32))
