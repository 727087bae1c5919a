"""Matrix factorisation baselines in torch, vectorised, seeded, early-stopped on validation.

- `BiasedMF` (Koren, Bell & Volinsky, 2009): r_hat = mu + b_u + b_i + p_u . q_i fitted to the
  training ratings by squared error + L2; items are ranked by predicted rating.
- `BPRMF` (Rendle et al., 2009): implicit feedback, x_ui = p_u . q_i + b_i, trained on
  (user, positive, sampled negative) triples with -log sigmoid(x_ui - x_uj) + L2.

Both evaluate NDCG@10 of the validation item (full ranking over unseen items) after each epoch,
keep the best parameters and stop after `patience` epochs without improvement.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from llmrec.baselines import TrainData, full_valid_ndcg10
from llmrec.errors import ConfigError


class _Torch:
    def __init__(self, embedding_size: int = 64, epochs: int = 100, learning_rate: float = 0.03,
                 weight_decay: float = 1e-5, batch_size: int = 16384, patience: int = 5, seed: int = 0,
                 verbose: bool = False) -> None:
        if embedding_size < 1 or epochs < 1 or batch_size < 1 or learning_rate <= 0:
            raise ConfigError("mf/bpr: embedding_size, epochs, batch_size must be >= 1 and learning_rate > 0")
        self.embedding_size, self.epochs, self.learning_rate = embedding_size, epochs, learning_rate
        self.weight_decay, self.batch_size, self.patience, self.seed = weight_decay, batch_size, patience, seed
        self.verbose = verbose
        self.history: list[float] = []  # validation NDCG@10 per epoch
        self.best_epoch = 0
        self.params: dict[str, torch.Tensor] = {}

    def _init(self, n_users: int, n_items: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        d = self.embedding_size
        return {
            "P": (torch.randn(n_users, d, generator=gen) * 0.1).requires_grad_(),
            "Q": (torch.randn(n_items, d, generator=gen) * 0.1).requires_grad_(),
            "bu": torch.zeros(n_users, requires_grad=True),
            "bi": torch.zeros(n_items, requires_grad=True),
        }

    def _train(self, data: TrainData, epoch_batches) -> None:
        """Shared loop: Adam over minibatches, validation after each epoch, best-state keeping."""
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.params = self._init(len(data.users), len(data.items), gen)
        opt = torch.optim.Adam(self.params.values(), lr=self.learning_rate)
        best, best_state, bad = -1.0, None, 0
        for epoch in range(1, self.epochs + 1):
            for loss in epoch_batches(rng):
                opt.zero_grad()
                loss.backward()
                opt.step()
            ndcg = full_valid_ndcg10(self, data)
            self.history.append(ndcg)
            if self.verbose:
                print(f"{self.name} epoch {epoch}: valid NDCG@10 {ndcg:.4f}")
            if ndcg > best:
                best, bad, self.best_epoch = ndcg, 0, epoch
                best_state = {k: v.detach().clone() for k, v in self.params.items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        assert best_state is not None
        self.params = best_state

    def score_all(self, users: np.ndarray) -> np.ndarray:
        p = self.params
        with torch.no_grad():
            idx = torch.as_tensor(users)
            s = p["P"][idx] @ p["Q"].T + p["bi"][None, :] + p["bu"][idx][:, None]
        return s.numpy()

    def __deepcopy__(self, memo):  # parameters are plain tensors; copy them explicitly
        new = copy.copy(self)
        new.params = {k: v.detach().clone() for k, v in self.params.items()}
        return new


class BiasedMF(_Torch):
    name = "mf"

    def fit(self, data: TrainData) -> BiasedMF:
        coo = data.ratings.tocoo()
        u = torch.as_tensor(coo.row, dtype=torch.long)
        i = torch.as_tensor(coo.col, dtype=torch.long)
        r = torch.as_tensor(coo.data, dtype=torch.float32)
        mu = self.mu = float(r.mean())
        lam = self.weight_decay

        def batches(rng: np.random.Generator):
            order = torch.as_tensor(rng.permutation(len(r)))
            for s in range(0, len(r), self.batch_size):
                b = order[s:s + self.batch_size]
                p = self.params
                pu, qi, bu, bi = p["P"][u[b]], p["Q"][i[b]], p["bu"][u[b]], p["bi"][i[b]]
                pred = mu + bu + bi + (pu * qi).sum(1)
                reg = (pu.pow(2).sum(1) + qi.pow(2).sum(1) + bu.pow(2) + bi.pow(2)).mean()
                yield torch.mean((pred - r[b]) ** 2) + lam * reg

        self._train(data, batches)
        return self

    def score_all(self, users: np.ndarray) -> np.ndarray:
        return super().score_all(users) + self.mu


class BPRMF(_Torch):
    name = "bpr"

    def fit(self, data: TrainData) -> BPRMF:
        coo = data.binary.tocoo()
        u_all = coo.row.astype(np.int64)
        i_all = coo.col.astype(np.int64)
        seen = data.binary.toarray() > 0
        n_items = len(data.items)
        lam = self.weight_decay

        def batches(rng: np.random.Generator):
            order = rng.permutation(len(u_all))
            u, i = u_all[order], i_all[order]
            j = rng.integers(0, n_items, len(u))
            bad = seen[u, j]
            while bad.any():  # resample negatives that the user interacted with
                j[bad] = rng.integers(0, n_items, int(bad.sum()))
                bad = seen[u, j]
            u_t, i_t, j_t = (torch.as_tensor(x) for x in (u, i, j))
            for s in range(0, len(u), self.batch_size):
                bu, bi, bj = u_t[s:s + self.batch_size], i_t[s:s + self.batch_size], j_t[s:s + self.batch_size]
                p = self.params
                pu, qi, qj = p["P"][bu], p["Q"][bi], p["Q"][bj]
                x = (pu * (qi - qj)).sum(1) + p["bi"][bi] - p["bi"][bj]
                reg = (pu.pow(2).sum(1) + qi.pow(2).sum(1) + qj.pow(2).sum(1)).mean()
                yield -torch.nn.functional.logsigmoid(x).mean() + lam * reg

        self._train(data, batches)
        return self
