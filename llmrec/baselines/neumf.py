"""Neural collaborative filtering (He et al., 2017, "Neural Collaborative Filtering").

NeuMF fuses GMF (the element-wise product of a user and an item embedding) with an MLP over the
concatenation of two other embeddings (`layers` ReLU layers, each halving the width), and a last
linear layer over both gives the logit of "user u interacts with item i". Trained with binary
cross-entropy on every training interaction plus `negatives` sampled unseen items each (the
paper's pointwise protocol), Adam, early stopping on validation NDCG@10. No pretraining of the two
halves: the paper reports it as a small gain that costs two more fits.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from llmrec.baselines import TrainData
from llmrec.baselines.training import fit_early_stopped, sample_negatives, seeded
from llmrec.baselines.vectors import Vectors
from llmrec.errors import ConfigError


class _Net(nn.Module):
    def __init__(self, n_users: int, n_items: int, d: int, layers: int) -> None:
        super().__init__()
        self.gmf_u, self.gmf_i = nn.Embedding(n_users, d), nn.Embedding(n_items, d)
        self.mlp_u, self.mlp_i = nn.Embedding(n_users, d), nn.Embedding(n_items, d)
        widths = [2 * d] + [max(d // 2 ** k, 4) for k in range(layers)]
        self.mlp = nn.Sequential(*[m for a, b in itertools.pairwise(widths) for m in (nn.Linear(a, b), nn.ReLU())])
        self.out = nn.Linear(d + widths[-1], 1)
        for emb in (self.gmf_u, self.gmf_i, self.mlp_u, self.mlp_i):
            nn.init.normal_(emb.weight, std=0.01)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        gmf = self.gmf_u(u) * self.gmf_i(i)
        mlp = self.mlp(torch.cat([self.mlp_u(u), self.mlp_i(i)], dim=-1))
        return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)


class NeuMF:
    name = "neumf"

    def __init__(self, embedding_size: int = 64, layers: int = 3, negatives: int = 4, epochs: int = 100,
                 learning_rate: float = 1e-3, batch_size: int = 2048, patience: int = 5, seed: int = 0) -> None:
        if min(embedding_size, layers, negatives, epochs, batch_size, patience) < 1 or learning_rate <= 0:
            raise ConfigError("neumf: embedding_size, layers, negatives, epochs, batch_size and patience must be "
                              ">= 1, learning_rate > 0")
        self.embedding_size, self.layers, self.negatives, self.epochs = embedding_size, layers, negatives, epochs
        self.learning_rate, self.batch_size, self.patience, self.seed = learning_rate, batch_size, patience, seed
        self.history: list[float] = []
        self.best_epoch = 0
        self.net: _Net | None = None
        self.data: TrainData | None = None

    def fit(self, data: TrainData) -> NeuMF:
        self.data = data
        coo = data.binary.tocoo()
        u_pos, i_pos = coo.row.astype(np.int64), coo.col.astype(np.int64)
        seen = data.binary.toarray() > 0
        k = self.negatives

        def batches(rng: np.random.Generator):
            neg = sample_negatives(rng, u_pos, seen, len(data.items), k)
            u = np.concatenate([u_pos, np.repeat(u_pos, k)])
            i = np.concatenate([i_pos, neg.ravel()])
            y = np.concatenate([np.ones(len(u_pos)), np.zeros(len(u_pos) * k)]).astype(np.float32)
            order = rng.permutation(len(u))
            u_t, i_t, y_t = torch.as_tensor(u[order]), torch.as_tensor(i[order]), torch.as_tensor(y[order])
            for s in range(0, len(u), self.batch_size):
                b = slice(s, s + self.batch_size)
                yield nn.functional.binary_cross_entropy_with_logits(self.net(u_t[b], i_t[b]), y_t[b])

        with seeded(self.seed):
            self.net = _Net(len(data.users), len(data.items), self.embedding_size, self.layers)
            fit_early_stopped(self, data, self.net, batches, epochs=self.epochs, learning_rate=self.learning_rate,
                              patience=self.patience, seed=self.seed)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.net is not None and self.data is not None, "fit first"
        n_items = len(self.data.items)
        items = torch.arange(n_items)
        with torch.no_grad():
            rows = [self.net(torch.full((n_items,), int(u)), items) for u in users]
        return torch.stack(rows).numpy() if rows else np.zeros((0, n_items), dtype=np.float32)

    def vectors(self) -> Vectors:
        """[GMF | MLP] embeddings. NeuMF scores through its MLP, so unlike the factor models their dot
        product is not its score (`Vectors.exact` is False)."""
        n, d = self.net, self.data
        assert n is not None and d is not None, "fit first"
        user = torch.cat([n.gmf_u.weight, n.mlp_u.weight], dim=1).detach().numpy()
        item = torch.cat([n.gmf_i.weight, n.mlp_i.weight], dim=1).detach().numpy()
        return Vectors(self.name, d.users, d.items, user, item, np.zeros(len(d.items), dtype=np.float32), exact=False)
