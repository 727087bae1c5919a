"""A token tree packed after its prompt: rows for the transformers backend's `tree_logprobs`.

The tree comes in depth-first preorder (a parent before its children, each subtree contiguous). A
node's log-probability is read at its parent's position (the prompt's last for a first token), so
only the nodes that have children go into the model; the others (the items' last tokens, or the
children a beam search asks about) are only read. The nodes that go in are cut into ranges of at
most `budget`; the nodes outside a range that it descends from are exactly the ancestors of its
first node (preorder), so a row holds the prompt, those ancestors and the range. In a row each node
attends to the prompt, its ancestors and itself, at position `prompt length + depth`: the context
and position it has in its own `prompt + path` sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TreeRow:
    nodes: np.ndarray  # tree nodes fed after the prompt: the range's ancestors, then the range
    parents: np.ndarray  # per fed node: the row index of its parent among `nodes` (-1: the prompt)
    depth: np.ndarray  # per fed node: its depth in the tree
    reads: np.ndarray  # tree nodes whose log-probability this row gives
    read_at: np.ndarray  # per read node: the row index of its parent among `nodes` (-1: the prompt's end)


def depths(parents: np.ndarray) -> np.ndarray:
    d = np.zeros(len(parents), dtype=np.int64)
    for k, p in enumerate(parents):
        d[k] = d[p] + 1 if p >= 0 else 0
    return d


def rows(parents: np.ndarray, budget: int) -> list[TreeRow]:
    """The tree's nodes with children cut into rows of at most `budget` (plus their first node's
    ancestors); every node is read in exactly one row, the one that holds its parent."""
    parents = np.asarray(parents, dtype=np.int64)
    if len(parents) and not (parents < np.arange(len(parents))).all():
        raise ValueError("a tree must come in preorder: every node after its parent")
    d = depths(parents)
    fed = np.unique(parents[parents >= 0])  # ascending: still preorder
    kids: dict[int, list[int]] = {}
    for k, p in enumerate(parents):
        kids.setdefault(int(p), []).append(k)
    out = []
    for lo in range(0, max(len(fed), 1), budget):
        part = fed[lo:lo + budget]
        context: list[int] = []
        p = int(parents[part[0]]) if len(part) else -1
        while p >= 0:
            context.append(p)
            p = int(parents[p])
        nodes = np.array(context[::-1] + part.tolist(), dtype=np.int64)
        local = {int(n): i for i, n in enumerate(nodes)}
        row_parents = np.array([local.get(int(parents[n]), -1) for n in nodes], dtype=np.int64)
        reads, at = [], []
        for n in ([-1] if lo == 0 else []) + part.tolist():  # the prompt's children are read in the first row
            reads += kids.get(int(n), [])
            at += [local.get(int(n), -1)] * len(kids.get(int(n), []))
        out.append(TreeRow(nodes, row_parents, d[nodes], np.array(reads, dtype=np.int64),
                           np.array(at, dtype=np.int64)))
    return out


def allowed(row_parents: np.ndarray, prompt_len: int) -> np.ndarray:
    """(P + m) x (P + m) attention pattern: the prompt causal; a node sees the prompt, its ancestors
    and itself."""
    m = len(row_parents)
    anc = np.zeros((m, m), dtype=bool)
    for i, p in enumerate(row_parents):
        if p >= 0:
            anc[i] = anc[p]
        anc[i, i] = True
    out = np.zeros((prompt_len + m, prompt_len + m), dtype=bool)
    out[:prompt_len, :prompt_len] = np.tril(np.ones((prompt_len, prompt_len), dtype=bool))
    out[prompt_len:, :prompt_len] = True
    out[prompt_len:, prompt_len:] = anc
    return out
