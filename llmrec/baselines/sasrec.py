"""SASRec (Kang & McAuley, 2018, "Self-Attentive Sequential Recommendation").

Causal self-attention over a user's last `max_len` items (item + learned position embeddings,
`layers` pre-norm transformer blocks with `heads` heads, dropout); the hidden state at position t
scores every item by a dot product with the shared item embeddings and should put the item at
t+1 first. Trained with the full softmax cross-entropy over the catalogue at every position (the
loss that makes SASRec as strong as BERT4Rec in Petrov & Macdonald, 2022) on each user's training
items, split into windows of `max_len` + 1 from the latest backwards; Adam, early stopping on
validation NDCG@10. Scoring reads the history before the target: the training items for the
validation item, the training items and the validation item for the test item.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from llmrec.baselines import TrainData
from llmrec.baselines.training import fit_early_stopped, seeded
from llmrec.baselines.vectors import Vectors
from llmrec.errors import ConfigError


class _Net(nn.Module):
    def __init__(self, n_items: int, d: int, max_len: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)  # item k is row k + 1; row 0 pads
        self.pos = nn.Embedding(max_len, d)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, dim_feedforward=d, dropout=dropout,
                                                               batch_first=True, norm_first=True)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.heads = heads
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, d) of left-padded item rows (0 = padding)."""
        length = seqs.shape[1]
        x = self.item(seqs) * math.sqrt(self.item.embedding_dim) + self.pos(torch.arange(length))
        x = self.drop(x) * (seqs != 0).unsqueeze(-1)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = causal & (seqs != 0).unsqueeze(1)  # (B, L, L): earlier real items only...
        allowed |= torch.eye(length, dtype=torch.bool)  # ...and itself, so padding rows stay finite
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
        mask = mask.repeat_interleave(self.heads, dim=0)
        for block in self.blocks:
            x = block(x, src_mask=mask) * (seqs != 0).unsqueeze(-1)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item.weight[1:].T


class SASRec:
    name = "sasrec"

    def __init__(self, embedding_size: int = 64, layers: int = 2, heads: int = 1, dropout: float = 0.2,
                 max_len: int = 50, epochs: int = 200, learning_rate: float = 1e-3, batch_size: int = 128,
                 patience: int = 10, seed: int = 0) -> None:
        if min(embedding_size, layers, heads, max_len, epochs, batch_size, patience) < 1 or learning_rate <= 0:
            raise ConfigError("sasrec: embedding_size, layers, heads, max_len, epochs, batch_size and patience "
                              "must be >= 1, learning_rate > 0")
        if embedding_size % heads:
            raise ConfigError(f"sasrec: baseline.sasrec.embedding_size ({embedding_size}) must be a multiple of "
                              f"baseline.sasrec.heads ({heads})")
        if not 0 <= dropout < 1:
            raise ConfigError(f"sasrec: baseline.sasrec.dropout must be in [0, 1); got {dropout}")
        self.embedding_size, self.layers, self.heads, self.dropout = embedding_size, layers, heads, dropout
        self.max_len, self.epochs, self.learning_rate = max_len, epochs, learning_rate
        self.batch_size, self.patience, self.seed = batch_size, patience, seed
        self.history: list[float] = []
        self.best_epoch = 0
        self.net: _Net | None = None
        self.data: TrainData | None = None

    def _pad(self, seqs: list[np.ndarray], length: int) -> torch.Tensor:
        out = np.zeros((len(seqs), length), dtype=np.int64)
        for k, s in enumerate(seqs):
            s = s[-length:]
            if len(s):
                out[k, -len(s):] = s + 1
        return torch.as_tensor(out)

    def windows(self, data: TrainData) -> list[np.ndarray]:
        """Training windows of up to max_len + 1 items: each user's latest, then earlier ones."""
        out = []
        for seq in data.sequences:
            end = len(seq)
            while end >= 2:
                out.append(seq[max(0, end - self.max_len - 1):end])
                end -= self.max_len
        return out

    def fit(self, data: TrainData) -> SASRec:
        self.data = data
        windows = self.windows(data)

        def batches(rng: np.random.Generator):
            order = rng.permutation(len(windows))
            for s in range(0, len(order), self.batch_size):
                rows = self._pad([windows[k] for k in order[s:s + self.batch_size]], self.max_len + 1)
                inputs, targets = rows[:, :-1], rows[:, 1:]
                real = (inputs != 0) & (targets != 0)
                hidden = self.net(inputs)[real]
                yield nn.functional.cross_entropy(self.net.logits(hidden), targets[real] - 1)

        with seeded(self.seed):
            self.net = _Net(len(data.items), self.embedding_size, self.max_len, self.layers, self.heads, self.dropout)
            fit_early_stopped(self, data, self.net, batches, epochs=self.epochs, learning_rate=self.learning_rate,
                              patience=self.patience, seed=self.seed)
        return self

    def user_vectors(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        """The hidden state after each user's history before the `stage` target."""
        assert self.net is not None and self.data is not None, "fit first"
        seqs = self._pad([self.data.history(int(u), stage) for u in users], self.max_len)
        with torch.no_grad():
            return self.net(seqs)[:, -1].numpy()

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.net is not None, "fit first"
        with torch.no_grad():
            return self.net.logits(torch.as_tensor(self.user_vectors(users, stage))).numpy()

    def vectors(self) -> Vectors:
        assert self.net is not None and self.data is not None, "fit first"
        d = self.data
        users = np.arange(len(d.users))
        return Vectors(self.name, d.users, d.items, self.user_vectors(users, "test"),
                       self.net.item.weight[1:].detach().numpy(), np.zeros(len(d.items), dtype=np.float32),
                       valid_user_vectors=self.user_vectors(users, "valid"))
