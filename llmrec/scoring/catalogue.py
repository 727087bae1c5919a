"""Whole-catalogue scoring: every item's likelihood from one token trie, and beam search over it.

An item's scored text (title style: its target text and the template's `end` marker; semantic IDs:
its code tokens) is a path of token ids, the very ids the per-candidate scorer reads
(`PromptStyle.target_ids`). The items' paths share prefixes, so they form a trie; a backend
computes each node once per user (`Backend.tree_logprobs`: the transformers backend packs the trie
after the prompt with a tree attention mask, vLLM asks one request per internal node and lets the
prefix cache share the rest), and an item's log-likelihood is the sum along its path: exactly the
per-candidate score, for the whole catalogue, in bounded memory (the trie goes in chunks).

Beam search walks the same trie from the root, keeping the `beams` best partial paths by their
log-likelihood; a path that reaches an item's end completes it. The K best completed items are
distinct and valid by construction, items in the user's history are never completed, and the
search stops once no partial path can beat the K-th completed item (a path's score only falls
as it grows). Constrained decoding over a prefix tree, as in RecLM-cgen and the semantic-ID
generators (TIGER, LC-Rec); the scores are the trie's exact log-likelihoods, not length-normalised.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class TokenTrie:
    """Items' token paths as a trie in depth-first preorder (a parent before its children, each
    subtree contiguous): node k holds `tokens[k]` after `parents[k]` (-1: the prompt)."""

    tokens: np.ndarray  # (n,) int64
    parents: np.ndarray  # (n,) int64, parents[k] < k
    ends: dict[str, int]  # item id -> the node its path ends at
    children: list[list[int]]  # per node; `roots` are the children of the prompt
    roots: list[int]
    items_at: dict[int, list[str]]  # node -> the items whose path ends there

    @classmethod
    def build(cls, paths: Mapping[str, Sequence[int]]) -> TokenTrie:
        """The trie of `paths` (item id -> token ids, each non-empty)."""
        nested: dict = {}
        for item, ids in paths.items():
            if not len(ids):
                raise ValueError(f"item {item!r} has an empty token path")
            node = nested
            for t in ids:
                node = node.setdefault(int(t), {})
            node.setdefault(None, []).append(item)
        tokens: list[int] = []
        parents: list[int] = []
        ends: dict[str, int] = {}
        def kids(node: dict) -> list[tuple[int, dict]]:  # largest token first: the stack pops smallest first
            return sorted(((t, c) for t, c in node.items() if t is not None), key=lambda x: -x[0])

        stack = [(t, child, -1) for t, child in kids(nested)]
        while stack:
            t, node, parent = stack.pop()
            k = len(tokens)
            tokens.append(t)
            parents.append(parent)
            for item in node.get(None, ()):
                ends[item] = k
            stack.extend((c, child, k) for c, child in kids(node))
        children: list[list[int]] = [[] for _ in tokens]
        roots = []
        for k, p in enumerate(parents):
            (children[p] if p >= 0 else roots).append(k)
        items_at: dict[int, list[str]] = {}
        for item, k in ends.items():
            items_at.setdefault(k, []).append(item)
        return cls(np.array(tokens, dtype=np.int64), np.array(parents, dtype=np.int64), ends, children, roots,
                   items_at)

    def __len__(self) -> int:
        return len(self.tokens)

    def path(self, node: int) -> list[int]:
        """The nodes from the root's child down to `node`."""
        out = []
        while node >= 0:
            out.append(node)
            node = int(self.parents[node])
        return out[::-1]

    def depth(self) -> np.ndarray:
        """Tokens before each node on its path (a root child: 0)."""
        d = np.zeros(len(self), dtype=np.int64)
        for k, p in enumerate(self.parents):
            d[k] = d[p] + 1 if p >= 0 else 0
        return d

    def cumulative(self, node_logprobs: np.ndarray) -> np.ndarray:
        """Per node, the summed log-probability of its path (parents come first in preorder)."""
        cum = np.asarray(node_logprobs, dtype=np.float64).copy()
        for k, p in enumerate(self.parents):
            if p >= 0:
                cum[k] += cum[p]
        return cum

    def subtree(self, nodes: Iterable[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`nodes` with all their ancestors, in preorder: (trie node ids, tokens, parents re-indexed)."""
        keep: set[int] = set()
        for k in nodes:
            while k >= 0 and k not in keep:
                keep.add(k)
                k = int(self.parents[k])
        ids = np.array(sorted(keep), dtype=np.int64)
        local = {int(k): i for i, k in enumerate(ids)}
        parents = np.array([local.get(int(self.parents[k]), -1) for k in ids], dtype=np.int64)
        return ids, self.tokens[ids], parents


def trie_scores(backend, prompt: list[int], trie: TokenTrie) -> dict[str, np.ndarray]:
    """Each item's per-token log-probabilities after `prompt`, every trie node computed once."""
    lp = backend.tree_logprobs(prompt, trie.tokens, trie.parents)
    return {item: lp[trie.path(k)] for item, k in trie.ends.items()}


@dataclass(frozen=True)
class Found:
    """Beam search's result for one user: items best first, their log-likelihoods, and the work done."""

    items: list[str]
    scores: list[float]
    steps: int
    nodes_scored: int


def beam_search(backend, prompt: list[int], trie: TokenTrie, k: int, beams: int,
                exclude: Iterable[str] = ()) -> Found:
    """The `k` most likely items of the trie after `prompt` (see the module docstring); items in
    `exclude` (the user's history) are never completed."""
    banned = set(exclude)
    known: dict[int, float] = {}  # node -> log P(token | prompt, path): a node's value never changes
    frontier: list[tuple[float, int]] = [(0.0, -1)]  # (path log-likelihood, node); -1: the prompt
    done: list[tuple[float, str]] = []  # a min-heap of the k best completed items
    steps = scored = 0
    while frontier:
        expand = [c for _, node in frontier for c in (trie.children[node] if node >= 0 else trie.roots)]
        todo = [c for c in expand if c not in known]
        if todo:
            ids, tokens, parents = trie.subtree(todo)
            lp = backend.tree_logprobs(prompt, tokens, parents)
            known.update((int(n), float(x)) for n, x in zip(ids, lp))
            scored += len(ids)
        steps += 1
        base = {node: score for score, node in frontier}
        partial = []
        for c in expand:
            score = base[int(trie.parents[c])] + known[c]
            for item in trie.items_at.get(c, ()):
                if item not in banned:
                    (heapq.heappush if len(done) < k else heapq.heappushpop)(done, (score, item))
            if trie.children[c]:
                partial.append((score, c))
        frontier = heapq.nlargest(beams, partial)
        if len(done) == k and (not frontier or frontier[0][0] <= done[0][0]):
            break  # no partial path can still beat the k-th item found
    best = sorted(done, key=lambda x: (-x[0], x[1]))
    return Found([i for _, i in best], [s for s, _ in best], steps, scored)
