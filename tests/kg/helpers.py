"""Tiny hand-made graphs shared by the KG tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from llmrec.baselines import TrainData
from llmrec.kg.graph import KnowledgeGraph
from llmrec.kg.triples import Triples


def train_data(users: list[str], items: list[str], train: dict[str, list[str]], valid: dict[str, str]) -> TrainData:
    """TrainData from per-user training items (time order) and validation items."""
    ui = {u: k for k, u in enumerate(users)}
    ii = {i: k for k, i in enumerate(items)}
    rows = [ui[u] for u in users for _ in train[u]]
    cols = [ii[i] for u in users for i in train[u]]
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(items)))
    return TrainData(users, items, ui, ii, m, m.copy(), np.array([ii[valid[u]] for u in users]),
                     [np.array([ii[i] for i in train[u]], dtype=np.int64) for u in users])


def graph(items: list[str], facts: list[tuple[str, str, str]]) -> KnowledgeGraph:
    """A KG from (head, relation, tail) facts whose heads or tails may be item ids."""
    return KnowledgeGraph.build(Triples([h for h, _, _ in facts], [r for _, r, _ in facts],
                                        [t for _, _, t in facts], "test"), items)
