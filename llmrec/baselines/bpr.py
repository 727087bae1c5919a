"""BPR-MF (Rendle et al., 2009, "BPR: Bayesian Personalized Ranking from Implicit Feedback") on the
`implicit` library's solver, early-stopped on validation.

x_ui = p_u . q_i + b_i, trained by SGD on (user, positive, sampled negative) triples to maximise
log sigmoid(x_ui - x_uj) with L2 on the factors. The solver is `implicit`'s Cython BPR (one
thread by default: deterministic for a seed, and as fast as several on catalogues of this size).
After each epoch the validation item's NDCG@10 (full ranking over unseen items) is measured;
the best epoch's factors are kept. Training stops after `patience` epochs without a gain, but
never before `min_epochs`: BPR's validation curve has long plateaus (on MovieLens
ml-latest-small it sits near 0.019 for epochs 10-20 and climbs to 0.033 by epochs 80-125), so a
short patience alone stops it on the first plateau. Learning rate and L2 were chosen on the
validation items of ML-100K and ml-latest-small (`scripts/tune_baselines.py`: the best mean).
"""

from __future__ import annotations

import numpy as np

from llmrec.baselines import TrainData
from llmrec.baselines.training import fit_implicit_early_stopped
from llmrec.baselines.vectors import Vectors
from llmrec.errors import ConfigError


class BPRMF:
    name = "bpr"

    def __init__(self, embedding_size: int = 64, epochs: int = 200, learning_rate: float = 0.02,
                 weight_decay: float = 0.001, patience: int = 20, min_epochs: int = 50, threads: int = 1,
                 seed: int = 0) -> None:
        if min(embedding_size, epochs, patience, threads) < 1 or learning_rate <= 0 or weight_decay < 0 \
                or min_epochs < 0:
            raise ConfigError("bpr: embedding_size, epochs, patience and threads must be >= 1, learning_rate > 0, "
                              "weight_decay and min_epochs >= 0")
        self.embedding_size, self.epochs, self.learning_rate = embedding_size, epochs, learning_rate
        self.weight_decay, self.patience, self.min_epochs = weight_decay, patience, min_epochs
        self.threads, self.seed = threads, seed
        self.history: list[float] = []  # validation NDCG@10 per epoch
        self.best_epoch = 0
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.data: TrainData | None = None

    def fit(self, data: TrainData) -> BPRMF:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self.data = data
        model = BayesianPersonalizedRanking(factors=self.embedding_size, learning_rate=self.learning_rate,
                                            regularization=self.weight_decay, iterations=self.epochs,
                                            num_threads=self.threads, random_state=self.seed)
        fit_implicit_early_stopped(self, data, model, epochs=self.epochs, patience=self.patience,
                                   min_epochs=self.min_epochs)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.user_factors is not None and self.item_factors is not None, "fit first"
        return self.user_factors[users] @ self.item_factors.T

    def vectors(self) -> Vectors:
        """User and item factors (implicit keeps the item bias as the last factor, against a user 1)."""
        assert self.user_factors is not None and self.data is not None, "fit first"
        return Vectors(self.name, self.data.users, self.data.items, self.user_factors, self.item_factors,
                       np.zeros(len(self.data.items), dtype=np.float32))
