"""Target attention over the history's item vectors, trained with BPR on frozen content vectors.

As in DIN (Zhou et al. 2018, "Deep Interest Network for Click-Through Rate Prediction"), the
user's interest depends on the item being scored: each history item gets an attention weight
from its match with the candidate, so a user who watches both horror and musicals is matched to
a horror candidate by their horror films. Here the item vectors are the frozen text vectors:

    h_j = P x_j,  c = P x_c                          (a learned projection to `embedding_size`)
    a_j = softmax_j((K h_j) . (Q c) / sqrt(d) + r_pos(j))   (r: a learned bias per recency position)
    score(c) = sum_j a_j (h_j . c) + w . x_c          (w . x_c: what kind of item is chosen at all)

The attention is a bilinear form (DIN uses an MLP over [h, c, h*c, h-c]) so that every item of
the catalogue can be scored for a user with two matrix products, which full ranking needs. No
parameter is tied to an item id: an item is scored from its text alone, cold or not. With K = 0
(its initial value) the weights are uniform, so training starts from mean pooling in the
projected space. Training pairs each training item (history: the items before it, at most
`max_len`) with uniform negatives among the warm items the user has not interacted with, and
minimises the BPR loss (Rendle et al. 2009).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from llmrec.baselines import TrainData
from llmrec.baselines.training import sample_negatives
from llmrec.content.index import normalise


class TargetAttention(nn.Module):
    def __init__(self, item_vectors: np.ndarray, embedding_size: int, max_len: int) -> None:
        super().__init__()
        x = torch.as_tensor(normalise(item_vectors))
        self.pad = x.shape[0]  # history rows equal to it are padding
        self.register_buffer("items", torch.cat([x, torch.zeros(1, x.shape[1])]))
        dim, d = x.shape[1], embedding_size
        self.proj = nn.Linear(dim, d)
        self.key = nn.Linear(d, d, bias=False)
        self.query = nn.Linear(d, d, bias=False)
        self.recency = nn.Parameter(torch.zeros(max_len))  # logit bias of each position, most recent last
        self.prior = nn.Linear(dim, 1)
        nn.init.zeros_(self.key.weight)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)
        self.max_len = max_len

    def _tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected item vectors, their keys, their queries and their prior score (pad row last)."""
        p = self.proj(self.items)
        return p, self.key(p), self.query(p), self.prior(self.items).squeeze(-1)

    def _pool(self, hist: torch.Tensor, p: torch.Tensor, k: torch.Tensor, c: torch.Tensor,
              q: torch.Tensor, shared: bool) -> torch.Tensor:
        h, hk = p[hist], k[hist]  # (B, L, d)
        pattern = "bld,nd->bln" if shared else "bld,bnd->bln"
        logits = torch.einsum(pattern, hk, q) / math.sqrt(h.shape[-1]) + self.recency[-hist.shape[1]:, None]
        logits = logits.masked_fill((hist == self.pad).unsqueeze(-1), float("-inf"))
        return (torch.softmax(logits, dim=1) * torch.einsum(pattern, h, c)).sum(1)

    def forward(self, hist: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Scores (B, C) of candidate rows `cand` (B, C) after left-padded histories `hist` (B, L)."""
        p, k, q, prior = self._tables()
        return self._pool(hist, p, k, p[cand], q[cand], shared=False) + prior[cand]

    def score_all(self, hist: torch.Tensor) -> torch.Tensor:
        """Scores (B, n_items) of every item."""
        p, k, q, prior = self._tables()
        return self._pool(hist, p, k, p[:-1], q[:-1], shared=True) + prior[:-1]


def pad_histories(histories: list[np.ndarray], length: int, pad: int) -> torch.Tensor:
    """The last `length` items of each history, left-padded with `pad`."""
    out = np.full((len(histories), length), pad, dtype=np.int64)
    for k, h in enumerate(histories):
        h = h[-length:]
        if len(h):
            out[k, length - len(h):] = h
    return torch.as_tensor(out)


class Examples:
    """Every training item with the history before it: (user, history, positive) rows."""

    def __init__(self, data: TrainData, max_len: int) -> None:
        users, hists, positives = [], [], []
        for u, seq in enumerate(data.sequences):
            for t in range(1, len(seq)):
                users.append(u)
                hists.append(seq[max(0, t - max_len):t])
                positives.append(seq[t])
        self.users = np.array(users, dtype=np.int64)
        self.hist = pad_histories(hists, max_len, len(data.items))
        self.positives = torch.as_tensor(np.array(positives, dtype=np.int64))
        self.excluded = data.binary.toarray() > 0  # never a negative: the user's items...
        self.excluded[:, data.cold] = True  # ...and held-out items, which training must not see

    def __len__(self) -> int:
        return len(self.users)

    def bpr_losses(self, net: TargetAttention, rng: np.random.Generator, batch_size: int,
                   negatives: int) -> Iterator[torch.Tensor]:
        """One epoch of BPR losses, shuffled; `negatives` uniform negatives per positive."""
        order = rng.permutation(len(self))
        n_items = self.excluded.shape[1]
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            neg = torch.as_tensor(sample_negatives(rng, self.users[rows], self.excluded, n_items, negatives))
            cand = torch.cat([self.positives[rows, None], neg], dim=1)
            scores = net(self.hist[rows], cand)
            yield -nn.functional.logsigmoid(scores[:, :1] - scores[:, 1:]).mean()
