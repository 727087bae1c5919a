"""Meta-path scoring (`kg-path`): user -> history item -> entity -> candidate, one feature per relation.

As in path-ranking recommenders (Lao & Cohen 2010's path ranking; HeteRec, Yu et al. 2014): for
each path type t, x_t(u, c) = log(1 + number of paths of type t from u's history items to c), and
score(u, c) = sum_t w_t x_t(u, c). A KG relation r gives the paths h -r-> e <-r- c through a shared
entity (and h -r- c for item-item facts such as sequels); `cowatched` adds the collaborative path
h <- other user -> c ("co-watched"), so that the learned weights say how much the KG adds to
co-occurrence. Items without any KG fact have all KG features 0 and are scored by that path only.

The weights w are fitted on the validation items, never the test items: each user's validation
item against `negatives` items drawn uniformly from those they have not seen, BPR's pairwise loss
(Rendle et al. 2009) mean log(1 + exp(-w.(x_pos - x_neg))) + weight_decay/2 |w|^2, minimised
with L-BFGS (convex, so no learning rate or epochs). The defaults were chosen on the validation
items of ML-100K (full-ranking NDCG@10: weight_decay 0.001 0.0477, 0.01 0.0491, 0.1 0.0524,
0.3 0.0538, 1 0.0533; without the co-watched path 0.003: the KG alone ranks the catalogue poorly).
Histories follow `TrainData.history(user,
stage)`: training items for the validation target, plus the validation item for the test target.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from llmrec.baselines import TrainData
from llmrec.errors import ConfigError
from llmrec.kg.base import KGModel
from llmrec.kg.graph import KnowledgeGraph

COWATCHED = "co-watched"


def _zero_diagonal(m: sp.csr_matrix) -> sp.csr_matrix:
    m = m.tolil()
    m.setdiag(0)
    m = m.tocsr()
    m.eliminate_zeros()
    return m


def path_counts(kg: KnowledgeGraph) -> list[sp.csr_matrix]:
    """Per relation, item x item counts of length-2 paths through a shared entity plus item-item facts."""
    return [_zero_diagonal((b @ b.T + d).tocsr()) for b, d in zip(kg.item_entity, kg.item_item)]


def cowatched(binary: sp.csr_matrix) -> sp.csr_matrix:
    """Item x item counts of training users who interacted with both."""
    x = binary.astype(np.float64).tocsr()
    x.data[:] = 1.0
    return _zero_diagonal((x.T @ x).tocsr())


def bpr_weights(diff: np.ndarray, weight_decay: float) -> np.ndarray:
    """argmin_w mean log(1 + exp(-diff @ w)) + weight_decay/2 |w|^2 (rows: positive minus negative features)."""

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = diff @ w
        value = float(np.mean(np.logaddexp(0.0, -z)) + 0.5 * weight_decay * w @ w)
        grad = -(diff * (0.5 * (1 - np.tanh(z / 2)))[:, None]).mean(0) + weight_decay * w  # sigmoid(-z)
        return value, grad

    res = minimize(loss, np.zeros(diff.shape[1]), jac=True, method="L-BFGS-B")
    return res.x


class KGPaths(KGModel):
    name = "kg-path"

    def __init__(self, negatives: int = 20, weight_decay: float = 0.3, seed: int = 0, batch_size: int = 256,
                 kg: str = "", graph: KnowledgeGraph | None = None, cowatched: bool = True) -> None:
        """negatives: sampled unseen items per validation item; weight_decay: L2 weight on the
        relation weights; kg: a triple file (default: the dataset's own KG); cowatched: add the
        collaborative path type."""
        if negatives < 1 or weight_decay < 0:
            raise ConfigError(f"kg-path: baseline.kg-path.negatives must be >= 1 and baseline.kg-path.weight_decay >= 0; "
                              f"got {negatives}, {weight_decay}")
        self.negatives, self.weight_decay, self.seed, self.batch_size = negatives, weight_decay, seed, batch_size
        self.kg, self.graph, self.cowatched = kg, graph, cowatched
        self.path_types: list[str] = []
        self.counts: list[sp.csr_matrix] = []
        self.weights: np.ndarray | None = None
        self.selected: dict = {}  # what was fitted on the validation items, for the run's log and run.json
        self.data: TrainData | None = None

    def fit(self, data: TrainData) -> KGPaths:
        self.data = data
        kg = self.knowledge_graph(data.items)
        self.path_types = list(kg.relations)
        self.counts = path_counts(kg)
        if self.cowatched:
            self.path_types.append(COWATCHED)
            self.counts.append(cowatched(data.binary))
        rng = np.random.default_rng(self.seed)
        users = np.arange(len(data.users))
        n_i = len(data.items)
        diffs = []
        for start in range(0, len(users), self.batch_size):
            batch = users[start:start + self.batch_size]
            x = self.features(batch, "valid")  # types x users x items
            for row, u in enumerate(batch):
                seen = np.zeros(n_i, dtype=bool)
                seen[data.history(int(u), "valid")] = True
                seen[data.valid[u]] = True
                pool = np.flatnonzero(~seen)
                if not len(pool):
                    continue
                neg = rng.choice(pool, size=self.negatives, replace=len(pool) < self.negatives)
                diffs.append(x[:, row, data.valid[u]][None, :] - x[:, row, neg].T)
        self.weights = bpr_weights(np.concatenate(diffs), self.weight_decay)
        self.selected = {"relation_weights": {t: round(float(w), 4) for t, w in zip(self.path_types, self.weights)}}
        return self

    def history_matrix(self, users: np.ndarray, stage: str) -> sp.csr_matrix:
        """users x items, binary: each user's history for `stage`."""
        assert self.data is not None, "fit first"
        hist = [np.unique(self.data.history(int(u), stage)) for u in users]
        rows = np.repeat(np.arange(len(users)), [len(h) for h in hist])
        cols = np.concatenate(hist) if hist else np.zeros(0, dtype=np.int64)
        return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(users), len(self.data.items)))

    def path_count_features(self, users: np.ndarray, stage: str) -> np.ndarray:
        """types x users x items: number of paths of each type from the user's history to each item."""
        h = self.history_matrix(users, stage)
        return np.stack([np.asarray((h @ m).todense()) for m in self.counts])

    def features(self, users: np.ndarray, stage: str) -> np.ndarray:
        return np.log1p(self.path_count_features(users, stage))

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.weights is not None, "fit first"
        out = np.empty((len(users), len(self.data.items)))
        for start in range(0, len(users), self.batch_size):
            batch = users[start:start + self.batch_size]
            out[start:start + len(batch)] = np.tensordot(self.weights, self.features(batch, stage), axes=1)
        return out

    def relation_weights(self) -> dict[str, float]:
        assert self.weights is not None, "fit first"
        return {t: float(w) for t, w in zip(self.path_types, self.weights)}

    def vectors(self) -> None:
        return None  # path counts: no user or item vectors
