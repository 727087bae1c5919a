"""Rating matrix factorisation in torch, vectorised, seeded, early-stopped on validation.

`BiasedMF` (Koren, Bell & Volinsky, 2009): r_hat = mu + b_u + b_i + p_u . q_i fitted to the
training ratings by squared error + L2; items are ranked by predicted rating. Fitted to the ratings
alone it never learns which items a user rates at all, and ranks below popularity (Cremonesi,
Koren & Turrin 2010); `unrated = k` also fits k items the user never rated per rating, drawn
afresh each epoch, to a rating of 0 (the imputed-zeros view that makes PureSVD rank well). It evaluates NDCG@10
of the validation item (full ranking over unseen items) after each epoch, keeps the best
parameters and stops after `patience` epochs without improvement. `BPRAdam` (`bpr-adam`) is BPR-MF
trained the same way with Adam on sampled triples; the default BPR-MF (`bpr`) runs on `implicit`'s
solver (`llmrec/baselines/bpr.py`).
"""

from __future__ import annotations

import numpy as np
import torch

from llmrec.baselines import TrainData
from llmrec.baselines.training import fit_early_stopped, sample_negatives, seeded
from llmrec.baselines.vectors import Vectors
from llmrec.errors import ConfigError


class _Factors(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, d: int) -> None:
        super().__init__()
        self.P = torch.nn.Parameter(torch.randn(n_users, d) * 0.1)
        self.Q = torch.nn.Parameter(torch.randn(n_items, d) * 0.1)
        self.bu = torch.nn.Parameter(torch.zeros(n_users))
        self.bi = torch.nn.Parameter(torch.zeros(n_items))


class _MF:
    def __init__(self, embedding_size: int, epochs: int, learning_rate: float, weight_decay: float,
                 batch_size: int, patience: int, seed: int) -> None:
        if embedding_size < 1 or epochs < 1 or batch_size < 1 or learning_rate <= 0:
            raise ConfigError("mf/bpr: embedding_size, epochs, batch_size must be >= 1 and learning_rate > 0")
        self.embedding_size, self.epochs, self.learning_rate = embedding_size, epochs, learning_rate
        self.weight_decay, self.batch_size, self.patience, self.seed = weight_decay, batch_size, patience, seed
        self.history: list[float] = []  # validation NDCG@10 per epoch
        self.best_epoch = 0
        self.net: _Factors | None = None
        self.data: TrainData | None = None

    def _fit(self, data: TrainData, epoch_losses) -> None:
        self.data = data
        with seeded(self.seed):
            self.net = _Factors(len(data.users), len(data.items), self.embedding_size)
            fit_early_stopped(self, data, self.net, epoch_losses, epochs=self.epochs, learning_rate=self.learning_rate,
                              patience=self.patience, seed=self.seed)

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        n = self.net
        assert n is not None, "fit first"
        with torch.no_grad():
            idx = torch.as_tensor(users)
            s = n.P[idx] @ n.Q.T + n.bi[None, :] + n.bu[idx][:, None]
        return s.numpy()

    def vectors(self) -> Vectors:
        n, d = self.net, self.data
        assert n is not None and d is not None, "fit first"
        # The user bias shifts a user's scores uniformly, so it never changes a ranking: left out.
        return Vectors(self.name, d.users, d.items, n.P.detach().numpy(), n.Q.detach().numpy(), n.bi.detach().numpy())


class BiasedMF(_MF):
    name = "mf"

    def __init__(self, embedding_size: int = 64, epochs: int = 100, learning_rate: float = 0.03,
                 weight_decay: float = 1e-5, batch_size: int = 16384, patience: int = 5, unrated: int = 4,
                 seed: int = 0) -> None:
        super().__init__(embedding_size, epochs, learning_rate, weight_decay, batch_size, patience, seed)
        if unrated < 0:
            raise ConfigError(f"mf: unrated must be >= 0; got {unrated}")
        self.unrated = unrated

    def fit(self, data: TrainData) -> BiasedMF:
        coo = data.ratings.tocoo()
        u0, i0 = coo.row.astype(np.int64), coo.col.astype(np.int64)
        r0 = coo.data.astype(np.float32)
        mu = self.mu = float(r0.mean())
        lam = self.weight_decay
        seen = data.binary.toarray() > 0 if self.unrated else None

        def batches(rng: np.random.Generator):
            u_np, i_np, r_np = u0, i0, r0
            if seen is not None:  # each epoch: `unrated` fresh unrated items per rating, fitted to 0
                j = sample_negatives(rng, u0, seen, len(data.items), self.unrated).ravel()
                u_np = np.concatenate([u0, np.repeat(u0, self.unrated)])
                i_np = np.concatenate([i0, j])
                r_np = np.concatenate([r0, np.zeros(len(j), dtype=np.float32)])
            u, i, r = torch.as_tensor(u_np), torch.as_tensor(i_np), torch.as_tensor(r_np)
            order = torch.as_tensor(rng.permutation(len(r)))
            for s in range(0, len(r), self.batch_size):
                b = order[s:s + self.batch_size]
                n = self.net
                pu, qi, bu, bi = n.P[u[b]], n.Q[i[b]], n.bu[u[b]], n.bi[i[b]]
                pred = mu + bu + bi + (pu * qi).sum(1)
                reg = (pu.pow(2).sum(1) + qi.pow(2).sum(1) + bu.pow(2) + bi.pow(2)).mean()
                yield torch.mean((pred - r[b]) ** 2) + lam * reg

        self._fit(data, batches)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        return super().score_all(users, stage) + self.mu


class BPRAdam(_MF):
    """BPR-MF trained with Adam in torch (the `bpr` of earlier releases, kept as `bpr-adam` so figures
    measured with it can be reproduced): minibatches of (user, positive, sampled negative), item
    bias, L2 on each triple's embeddings. Better than `bpr` on ML-100K's sampled lists, at several
    times the fit time (docs/baselines.md)."""

    name = "bpr-adam"

    def __init__(self, embedding_size: int = 64, epochs: int = 200, learning_rate: float = 1e-3,
                 weight_decay: float = 1e-5, batch_size: int = 1024, patience: int = 5, seed: int = 0) -> None:
        super().__init__(embedding_size, epochs, learning_rate, weight_decay, batch_size, patience, seed)

    def fit(self, data: TrainData) -> BPRAdam:
        coo = data.binary.tocoo()
        u_all = coo.row.astype(np.int64)
        i_all = coo.col.astype(np.int64)
        seen = data.binary.toarray() > 0
        lam = self.weight_decay

        def batches(rng: np.random.Generator):
            order = rng.permutation(len(u_all))
            u, i = u_all[order], i_all[order]
            j = sample_negatives(rng, u, seen, len(data.items))[:, 0]
            u_t, i_t, j_t = (torch.as_tensor(x) for x in (u, i, j))
            for s in range(0, len(u), self.batch_size):
                bu, bi, bj = u_t[s:s + self.batch_size], i_t[s:s + self.batch_size], j_t[s:s + self.batch_size]
                n, emb = self.net, torch.nn.functional.embedding  # embedding's backward beats indexing's
                pu, qi, qj = emb(bu, n.P), emb(bi, n.Q), emb(bj, n.Q)
                x = (pu * (qi - qj)).sum(1) + n.bi[bi] - n.bi[bj]
                reg = (pu.pow(2).sum(1) + qi.pow(2).sum(1) + qj.pow(2).sum(1)).mean()
                yield -torch.nn.functional.logsigmoid(x).mean() + lam * reg

        self._fit(data, batches)
        return self
