"""The KG aligned with a catalogue, and the user-item-entity graph the walkers run on.

Each fact is oriented item-first: (item, relation, entity) when one end is a catalogue item, or
an item-item fact when both are (sequels). Inverse relations (`film.film.directed_by` and
`film.director.film`) share a readable name (`triples.relation_name`), so a fact stated both ways
counts once. Facts between two non-item entities are counted and left out: ML-100K's KG has none,
and the scorers here only read paths that start and end at items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from llmrec.kg.triples import Triples, relation_name


@dataclass
class KnowledgeGraph:
    """Per relation r, a binary item x entity incidence `item_entity[r]` and a symmetric binary
    item x item matrix `item_item[r]`; row k is `items[k]` of the catalogue it was built for."""

    items: list[str]
    entities: list[str]  # non-item entities, column order of the incidence matrices
    relations: list[str]  # readable names, sorted
    item_entity: list[sp.csr_matrix]
    item_item: list[sp.csr_matrix]
    names: dict[str, str]  # entity id -> display name, where the source has one
    source: str
    triples_read: int
    triples_dropped: int  # between two non-item entities, or naming items outside the catalogue
    ids_only: bool = False  # entities are opaque ids (`Triples.ids_only`)

    @classmethod
    def build(cls, triples: Triples, items: Sequence[str]) -> KnowledgeGraph:
        items = list(items)
        # An entity that is an item's (through the link, or the item's own id without one) is that item.
        node_item = ({e: k for k, i in enumerate(items) if (e := triples.link.get(i)) is not None}
                     if triples.link else {i: k for k, i in enumerate(items)})
        rel_of = {r: relation_name(r) for r in set(triples.relations)}
        relations = sorted(set(rel_of.values()))
        rel_index = {r: k for k, r in enumerate(relations)}
        ie: list[tuple[int, int, str]] = []  # (relation, item, entity)
        ii: list[tuple[int, int, int]] = []  # (relation, item, item)
        dropped = 0
        for h, r, t in zip(triples.heads, triples.relations, triples.tails):
            hi, ti, rk = node_item.get(h), node_item.get(t), rel_index[rel_of[r]]
            if hi is not None and ti is not None:
                ii.append((rk, hi, ti))
            elif hi is not None:
                ie.append((rk, hi, t))
            elif ti is not None:
                ie.append((rk, ti, h))
            else:
                dropped += 1
        entities = sorted({e for _, _, e in ie})
        ent_index = {e: k for k, e in enumerate(entities)}
        n_i, n_e = len(items), len(entities)
        rel = np.array([r for r, _, _ in ie], dtype=np.int64)
        row = np.array([i for _, i, _ in ie], dtype=np.int64)
        col = np.array([ent_index[e] for _, _, e in ie], dtype=np.int64)
        pairs = np.array(ii, dtype=np.int64).reshape(-1, 3)
        item_entity, item_item = [], []
        for k in range(len(relations)):
            m = rel == k
            b = sp.csr_matrix((np.ones(int(m.sum())), (row[m], col[m])), shape=(n_i, n_e))
            b.data[:] = 1.0  # a fact stated twice (both directions) counts once
            p = pairs[pairs[:, 0] == k]
            d = sp.csr_matrix((np.ones(2 * len(p)), (np.r_[p[:, 1], p[:, 2]], np.r_[p[:, 2], p[:, 1]])),
                              shape=(n_i, n_i))
            d.data[:] = 1.0
            item_entity.append(b)
            item_item.append(d)
        return cls(items, entities, relations, item_entity, item_item, dict(triples.names), triples.source,
                   len(triples), dropped, triples.ids_only)

    def incidence(self) -> sp.csr_matrix:
        """Binary item x entity matrix over all relations."""
        m = sum(self.item_entity, sp.csr_matrix((len(self.items), len(self.entities))))
        m = m.tocsr()
        m.data[:] = 1.0
        return m

    def item_links(self) -> sp.csr_matrix:
        """Binary symmetric item x item matrix of item-item facts over all relations."""
        m = sum(self.item_item, sp.csr_matrix((len(self.items), len(self.items)))).tocsr()
        m.data[:] = 1.0
        return m

    def linked_items(self) -> np.ndarray:
        """Boolean per item: whether any fact touches it."""
        return (np.asarray(self.incidence().sum(1)).ravel() + np.asarray(self.item_links().sum(1)).ravel()) > 0

    def entity_label(self, k: int) -> str:
        """Entity `k`'s name when the source has one, else its id."""
        e = self.entities[k]
        return self.names.get(e, e)


def adjacency(binary: sp.csr_matrix, kg: KnowledgeGraph, kg_weight: float = 1.0) -> sp.csr_matrix:
    """Symmetric adjacency over users, then items, then entities: user-item edges from the
    training interactions `binary` (users x items), item-entity and item-item edges from the KG,
    each KG edge weighted `kg_weight` relative to an interaction."""
    x = binary.astype(np.float64).tocsr()
    x.data[:] = 1.0
    n_i, n_e = x.shape[1], len(kg.entities)
    assert n_i == len(kg.items), "the KG was built for another catalogue"
    links, inc = kg_weight * kg.item_links(), kg_weight * kg.incidence()
    if n_e == 0:
        return sp.bmat([[None, x], [x.T, links]], format="csr")
    return sp.bmat([[None, x, None], [x.T, links, inc], [None, inc.T, None]], format="csr")
