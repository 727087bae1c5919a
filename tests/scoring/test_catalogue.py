"""Whole-catalogue scoring: the token trie, its packing into rows, exact trie scores on the real model
(every catalogue item of 5 users equals its own per-candidate score), and beam search over the trie."""

import heapq
import itertools

import numpy as np
import pytest

from llmrec.backends import ScoreRequest, tree
from llmrec.prompts.render import load_template
from llmrec.scoring.catalogue import TokenTrie, beam_search, trie_scores
from llmrec.scoring.rank import LLMRanker, UserQuery

PATHS = {"a": [5, 1, 9], "b": [5, 1], "c": [5, 2, 9], "d": [7], "e": [5, 1, 9], "f": [3, 4, 4, 4]}


class PathBackend:
    """Fake: log P(t | path) depends on the token and the path's length, so scores reveal the path."""

    name, max_length, caches_prefixes, slots = "path", 4096, False, None

    def __init__(self) -> None:
        self.calls = 0
        self.nodes = 0

    def lp(self, token: int, depth: int) -> float:
        return -((token * 7 + depth * 3) % 11) / 4 - 0.1

    def tree_logprobs(self, prompt, tokens, parents):
        self.calls += 1
        self.nodes += len(tokens)
        return np.array([self.lp(t, d) for t, d in zip(tokens, tree.depths(np.asarray(parents)))])

    def continuation_logprobs(self, requests):
        return [[np.array([self.lp(t, j) for j, t in enumerate(c)]) for c in r.continuations] for r in requests]


def test_trie_is_preorder_with_shared_prefixes():
    t = TokenTrie.build(PATHS)
    assert (t.parents < np.arange(len(t))).all()  # preorder: parents first
    assert len(t) == 10  # 5, 5-1, 5-1-9, 5-2, 5-2-9, 7, 3, 3-4, 3-4-4, 3-4-4-4: shared beginnings once
    for item, ids in PATHS.items():
        assert t.tokens[t.path(t.ends[item])].tolist() == ids
    assert sorted(t.items_at[t.ends["a"]]) == ["a", "e"] and t.items_at[t.ends["b"]] == ["b"]
    assert t.children[t.ends["b"]] == [t.ends["a"]]  # b's path is a prefix of a's
    ids, tokens, parents = t.subtree([t.ends["c"]])
    assert tokens.tolist() == [5, 2, 9] and parents.tolist() == [-1, 0, 1] and t.tokens[ids].tolist() == [5, 2, 9]


@pytest.mark.parametrize("budget", [1, 2, 3, 100])
def test_rows_feed_parents_only_and_read_every_node_once(budget):
    t = TokenTrie.build(PATHS)
    parts = tree.rows(t.parents, budget)
    read = np.concatenate([r.reads for r in parts])
    assert sorted(read.tolist()) == list(range(len(t)))
    with_children = {int(p) for p in t.parents if p >= 0}
    assert set(np.concatenate([r.nodes for r in parts]).tolist()) == with_children  # leaves are only read
    for r in parts:
        for i, n in enumerate(r.nodes):  # a node's row parent is its tree parent, present in the row
            assert (r.nodes[r.parents[i]] if r.parents[i] >= 0 else -1) == t.parents[n]
        for k, at in zip(r.reads, r.read_at):  # read at its parent's place in the row
            assert (r.nodes[at] if at >= 0 else -1) == t.parents[k]
        mask = tree.allowed(r.parents, 3)
        for i, n in enumerate(r.nodes):
            sees = {int(r.nodes[j]) for j in np.flatnonzero(mask[3 + i, 3:])}
            assert sees == set(t.path(int(n)))  # its ancestors and itself, nothing else
            assert mask[3 + i, :3].all()
    assert tree.rows(np.array([-1, -1]), 4)[0].reads.tolist() == [0, 1]  # first tokens only: the prompt alone


def test_beam_search_is_exact_with_enough_beams_and_never_completes_history():
    rng = np.random.default_rng(0)
    paths = {f"i{k}": rng.integers(1, 9, size=rng.integers(1, 5)).tolist() for k in range(60)}
    trie, backend = TokenTrie.build(paths), PathBackend()
    exact = {i: float(lp.sum()) for i, lp in trie_scores(backend, [1, 2], trie).items()}
    history = set(heapq.nlargest(3, exact, key=exact.get))
    want = heapq.nlargest(10, (i for i in exact if i not in history), key=lambda i: (exact[i], i))
    found = beam_search(backend, [1, 2], trie, k=10, beams=len(trie), exclude=history)
    assert [exact[i] for i in found.items] == pytest.approx([exact[i] for i in want])
    assert found.scores == pytest.approx([exact[i] for i in found.items])
    assert len(set(found.items)) == 10 and not set(found.items) & history
    narrow = beam_search(backend, [1, 2], trie, k=10, beams=2, exclude=history)
    assert len(set(narrow.items)) == len(narrow.items) <= 10 and not set(narrow.items) & history
    assert narrow.nodes_scored < found.nodes_scored


def test_title_style_uses_the_trie_for_long_lists(ml100k, ml100k_split, tokenizer):
    """A fake backend that counts: long lists go through the trie, short ones are packed, and both
    give the same scores (the fake's log-probs depend on the path only)."""
    template = load_template("title/catalogue_v1")
    backend = PathBackend()
    q = UserQuery("7", ml100k_split["7"].events(ml100k, "test", 5), sorted(ml100k.items)[:200])
    (trie,) = LLMRanker(template, backend, tokenizer, ml100k, trie="always").score([q])
    assert backend.calls == 1
    (packed,) = LLMRanker(template, backend, tokenizer, ml100k, trie="never").score([q])
    assert backend.calls == 1 and np.allclose(trie.scores, packed.scores)
    LLMRanker(template, backend, tokenizer, ml100k).score([q])  # auto: 200 candidates is a long list
    assert backend.calls == 2


def per_candidate(backend, prompt, answers, pack=128):
    """Each candidate's own score by the per-candidate scorer, `pack` candidates after one prompt."""
    out = []
    for start in range(0, len(answers), pack):
        (lps,) = backend.continuation_logprobs([ScoreRequest(prompt, answers[start:start + pack])])
        out += [float(lp.sum()) for lp in lps]
    return np.array(out)


@pytest.mark.slow
def test_trie_scores_equal_per_candidate_scores_for_the_whole_catalogue(hf_backend, ml100k, ml100k_split,
                                                                      tokenizer):
    """Every unseen catalogue item of 5 users on the real model: the trie's score of an item equals
    the per-candidate scorer's. In fp32 the two computations round differently (other row shapes):
    measured max 1.2e-4 over these 7,634 items, 99% within 4.1e-5 (each score within about 5e-5 of the
    item scored alone); in float64 they agree a thousand times closer (next test)."""
    template = load_template("title/catalogue_v1")
    ranker = LLMRanker(template, hf_backend, tokenizer, ml100k, trie="always")
    diffs, nodes, tokens = [], 0, 0
    for user in ("1", "42", "99", "400", "943"):
        seq = ml100k_split[user]
        cands = sorted(set(ml100k.items) - set(seq.history("test")))
        q = UserQuery(user, seq.events(ml100k, "test", 5), cands)
        (via_trie,) = ranker.score([q])
        (s,), _ = ranker.scorables(q)
        diffs.append(np.abs(via_trie.scores - per_candidate(hf_backend, s.prompt.ids, s.answers)))
        nodes += len(TokenTrie.build(dict(zip(cands, s.answers))))
        tokens += sum(len(a) for a in s.answers)
    d = np.concatenate(diffs)
    assert len(d) > 7500 and d.max() < 2e-4 and np.quantile(d, 0.99) < 6e-5, (d.max(), np.quantile(d, 0.99))
    assert nodes < 0.95 * tokens  # the trie shares the titles' common beginnings


@pytest.mark.slow
def test_trie_scores_are_exact_in_float64(ml100k, ml100k_split, tokenizer):
    """The same in float64 on 300 items: equal to a relative 1e-7 (against 1e-6 in fp32), so the fp32
    gap above is rounding."""
    from llmrec.backends.hf import HFBackend

    backend = HFBackend("smollm2-135m-instruct", device="cpu", dtype="float64")
    ranker = LLMRanker(load_template("title/catalogue_v1"), backend, tokenizer, ml100k, trie="always")
    seq = ml100k_split["42"]
    q = UserQuery("42", seq.events(ml100k, "test", 5), sorted(set(ml100k.items) - set(seq.history("test")))[:300])
    (via_trie,) = ranker.score([q])
    (s,), _ = ranker.scorables(q)
    np.testing.assert_allclose(via_trie.scores, per_candidate(backend, s.prompt.ids, s.answers), rtol=1e-7, atol=0)


@pytest.mark.slow
def test_beam_search_on_the_real_model_finds_valid_items_with_exact_scores(hf_backend, ml100k, ml100k_split,
                                                                          tokenizer):
    """Beam 20 returns 10 distinct catalogue items outside the history, best first, with their exact
    per-candidate scores, scoring a fraction of the trie. (That a beam as wide as the trie finds the
    exact top 10 is tested above on a fake; how much of it a narrow beam recovers on this model is a
    figure of scripts/bench_catalogue.py, not a property.)"""
    template = load_template("title/catalogue_v1")
    ranker = LLMRanker(template, hf_backend, tokenizer, ml100k)
    seq = ml100k_split["42"]
    q = UserQuery("42", seq.events(ml100k, "test", 5), sorted(ml100k.items))
    (s,), _ = ranker.scorables(q)
    trie = TokenTrie.build(dict(zip(q.candidates, s.answers)))
    history = set(seq.history("test"))
    found = beam_search(hf_backend, s.prompt.ids, trie, k=10, beams=20, exclude=history)
    assert len(found.items) == len(set(found.items)) == 10 and not set(found.items) & history
    own = per_candidate(hf_backend, s.prompt.ids, [s.answers[q.candidates.index(i)] for i in found.items])
    np.testing.assert_allclose(found.scores, own, atol=2e-4)
    assert all(a >= b for a, b in itertools.pairwise(found.scores))
    assert found.nodes_scored < len(trie) / 3
