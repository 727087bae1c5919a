"""Prompt styles: how a template's header `style:` turns users into scored sequences and scores.

A style is one registered class with three methods, so ranking, training and everything else
that reads a template agree on it:

- `build(prompts, user_id, history, items)`: the scored sequences of one user (`Scorable`s);
- `score(ranker, queries)`: the candidates' scores of several users from one backend call;
- `examples(prompts, rng, negatives, user_id, history, target)`: training examples of one target,
  `(prompt, answer ids, items shown, items scored, answer choices)` each.

Capabilities: `shuffled` (list styles: candidates shown in a seeded per-user order, so a
retriever's order cannot become a position bias), `choices` (answers are a fixed set of single
tokens: the collaborative residual and the choice loss apply), `draws` (a target can be drawn
again with other negatives), `generates` (a `generate(ranker, queries, k, beams)` method: the top
k of the candidates by beam search over their token trie). Register a new one with
`@STYLES.register("name", ...)` on its class.

- title (P5 / BIGRec): one prompt; each candidate's answer is its target text, scored by summed
  (or mean, or calibrated) log-likelihood;
- letters (LlamaRec): one prompt listing the candidates as (A), (B), ...; score = the letter's
  log-probability at the answer position, one forward pass;
- yesno (TALLRec): one prompt per candidate; score = log P(Yes) - log P(No);
- sid (TIGER, LC-Rec): a title style whose items are their semantic-ID codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.backends import ScoreRequest
from llmrec.data.dataset import Interaction
from llmrec.prompts.build import item_vars
from llmrec.prompts.style import PromptStyle, Scorable
from llmrec.prompts.verbalize import letters
from llmrec.registry import STYLES
from llmrec.scoring.catalogue import TokenTrie, beam_search, trie_scores
from llmrec.scoring.likelihood import reduce
from llmrec.scoring.rank import Scored

if TYPE_CHECKING:
    from llmrec.data.queries import UserQuery
    from llmrec.scoring.rank import LLMRanker

Negatives = Callable[[int], list[str]]  # k distinct items the user never interacted with


def _scored(q: UserQuery, scores: np.ndarray, dropped: int, tokens: int) -> Scored:
    return Scored(q.user_id, q.candidates, scores, dropped, tokens)


@STYLES.register("title", shuffled=False, choices=False, draws=False, generates=True)
class Title:
    """Log-likelihood of each candidate's text (and the template's `end`) after one shared prompt.
    Long candidate lists (the whole catalogue) are scored through their token trie, each trie node
    once (`llmrec/scoring/catalogue.py`); short ones are packed one continuation per candidate."""

    def build(self, ps: PromptStyle, user_id: str, history: list[Interaction], items: list[str]) -> list[Scorable]:
        reserve = max(ps.target_length(i) for i in items) + 2
        prompt = ps.builder.build(history, reserve=reserve, user_id=user_id, **ps.user_vars(user_id))
        return [Scorable(prompt, [ps.target_ids(prompt, i) for i in items])]

    def score(self, ranker: LLMRanker, queries: list[UserQuery]) -> list[Scored]:
        built = [ranker.scorables(q)[0][0] for q in queries]
        token_lps: list[list[np.ndarray] | None] = [None] * len(queries)
        packed = [k for k, q in enumerate(queries) if not ranker.use_trie(len(q.candidates))]
        for k, lps in zip(packed, ranker.backend.continuation_logprobs(
                [ScoreRequest(built[k].prompt.ids, built[k].answers) for k in packed]) if packed else []):
            token_lps[k] = lps
        for k, (q, s) in enumerate(zip(queries, built)):
            if token_lps[k] is None:
                by_item = trie_scores(ranker.backend, s.prompt.ids, TokenTrie.build(dict(zip(q.candidates, s.answers))))
                token_lps[k] = [by_item[c] for c in q.candidates]
        if ranker.scoring == "calibrated":
            ranker.fill_null({c for q in queries for c in q.candidates})
        out = []
        for q, s, lps in zip(queries, built, token_lps):
            null = [ranker.null[c] for c in q.candidates] if ranker.scoring == "calibrated" else None
            out.append(_scored(q, reduce(lps, ranker.scoring, null), s.prompt.dropped, len(s.prompt.ids)))
        return out

    def examples(self, ps: PromptStyle, rng: np.random.Generator, negatives: Negatives, user_id: str,
                 history: list[Interaction], target: str, n: int = 20) -> list[tuple]:
        (s,) = self.build(ps, user_id, history, [target])
        return [(s.prompt, s.answers[0], (target,), (target,), ())]

    def generate(self, ranker: LLMRanker, queries: list[UserQuery], k: int, beams: int) -> list[Scored]:
        """Each user's top `k` candidates by beam search over their token trie (history items, if a
        query lists them, are never completed); `Scored.candidates` are the items found, best first."""
        out = []
        for q in queries:
            (s,), _ = ranker.scorables(q)
            trie = TokenTrie.build(dict(zip(q.candidates, s.answers)))
            found = beam_search(ranker.backend, s.prompt.ids, trie, k, beams, {h.item.id for h in q.history})
            out.append(Scored(q.user_id, found.items, np.array(found.scores), s.prompt.dropped, len(s.prompt.ids)))
        return out


@STYLES.register("sid", shuffled=False, choices=False, draws=False, generates=True, needs_sid=True)
class SemanticID(Title):
    """Semantic IDs (TIGER, LC-Rec): the history shown as item codes (`item.sid`, new tokens an
    adapter trained) and the next item's code scored, or generated over the code trie, like a title."""


@STYLES.register("letters", shuffled=True, choices=True, draws=True, generates=False)
class Letters:
    """The candidates listed as (A)...(T); each one's score is its letter's log-probability."""

    def build(self, ps: PromptStyle, user_id: str, history: list[Interaction], items: list[str]) -> list[Scorable]:
        labels = letters(len(items))
        shown = [dict(item_vars(ps.dataset.items[i]), letter=labels[j]) for j, i in enumerate(items)]
        prompt = ps.builder.build(history, reserve=1, user_id=user_id, candidates=shown, **ps.user_vars(user_id))
        return [Scorable(prompt, [[ps.answer_token(prompt, label)] for label in labels])]

    def score(self, ranker: LLMRanker, queries: list[UserQuery]) -> list[Scored]:
        prompts, tokens, orders, built = [], [], [], []
        for q in queries:
            (s,), order = ranker.scorables(q)
            prompts.append(s.prompt.ids)
            tokens.append([a[0] for a in s.answers])
            orders.append(order)
            built.append(s.prompt)
        out = []
        for q, order, lp, prompt in zip(queries, orders, ranker.backend.next_token_logprobs(prompts, tokens), built):
            scores = np.empty(len(q.candidates))
            scores[order] = lp  # letter j labels candidate order[j]
            out.append(_scored(q, scores, prompt.dropped, len(prompt.ids)))
        return out

    def examples(self, ps: PromptStyle, rng: np.random.Generator, negatives: Negatives, user_id: str,
                 history: list[Interaction], target: str, n: int = 20) -> list[tuple]:
        cands = negatives(n - 1) + [target]
        shown = [cands[k] for k in rng.permutation(len(cands))]
        (s,) = self.build(ps, user_id, history, shown)
        return [(s.prompt, s.answers[shown.index(target)], tuple(cands), tuple(shown), tuple(a[0] for a in s.answers))]


@STYLES.register("yesno", shuffled=False, choices=True, draws=True, generates=False)
class YesNo:
    """One prompt per candidate; score = log P(Yes) - log P(No)."""

    def build(self, ps: PromptStyle, user_id: str, history: list[Interaction], items: list[str]) -> list[Scorable]:
        out = []
        for i in items:
            prompt = ps.builder.build(history, reserve=1, user_id=user_id,
                                      candidate=item_vars(ps.dataset.items[i]), **ps.user_vars(user_id))
            out.append(Scorable(prompt, [[ps.answer_token(prompt, "Yes")], [ps.answer_token(prompt, "No")]]))
        return out

    def score(self, ranker: LLMRanker, queries: list[UserQuery]) -> list[Scored]:
        """The prompts share the history: their common token prefix is computed once and each
        candidate's question (+ the Yes or No token) is a continuation, so log P(Yes) and log P(No)
        are the last token of two continuations. A backend that reuses shared prefixes by itself
        (`caches_prefixes`) gets the whole prompts and reads the two answer tokens instead."""
        if ranker.backend.caches_prefixes:
            return self._whole_prompts(ranker, queries)
        requests, meta = [], []
        for q in queries:
            built, _ = ranker.scorables(q)
            ids = [s.prompt.ids for s in built]
            shared = common_prefix(ids)
            conts = []
            for s in built:
                suffix = s.prompt.ids[shared:]
                conts += [suffix + answer for answer in s.answers]  # [..., Yes], [..., No]
            requests.append(ScoreRequest(ids[0][:shared], conts))
            meta.append((max(s.prompt.dropped for s in built), max(len(s.prompt.ids) for s in built)))
        out = []
        for q, (dropped, longest), lps in zip(queries, meta, ranker.backend.continuation_logprobs(requests)):
            scores = np.array([lps[2 * k][-1] - lps[2 * k + 1][-1] for k in range(len(q.candidates))])
            out.append(_scored(q, scores, dropped, longest))
        return out

    def _whole_prompts(self, ranker: LLMRanker, queries: list[UserQuery]) -> list[Scored]:
        prompts, tokens, meta = [], [], []
        for q in queries:
            built, _ = ranker.scorables(q)
            for s in built:
                prompts.append(s.prompt.ids)
                tokens.append([a[0] for a in s.answers])
            meta.append((len(built), max(s.prompt.dropped for s in built), max(len(s.prompt.ids) for s in built)))
        lps = iter(ranker.backend.next_token_logprobs(prompts, tokens))
        out = []
        for q, (n, dropped, longest) in zip(queries, meta):
            out.append(_scored(q, np.array([lp[0] - lp[1] for lp in (next(lps) for _ in range(n))]), dropped, longest))
        return out

    def examples(self, ps: PromptStyle, rng: np.random.Generator, negatives: Negatives, user_id: str,
                 history: list[Interaction], target: str, n: int = 20) -> list[tuple]:
        """Balanced: the target answers Yes, one unseen item answers No."""
        negative = negatives(1)[0]
        pos, neg = self.build(ps, user_id, history, [target, negative])
        return [(pos.prompt, pos.answers[0], (target,), (target,), (pos.answers[0][0], pos.answers[1][0])),
                (neg.prompt, neg.answers[1], (negative,), (negative,), (neg.answers[0][0], neg.answers[1][0]))]


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix, leaving every sequence at least one token of its own."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 1)


def style_of(name: str) -> Any:
    """The registered style `name` (an instance; `STYLES.entry(name).capabilities` lists what it can do)."""
    return STYLES.get(name)()
