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
again with other negatives). Register a new one with `@STYLES.register("name", ...)` on its class.

- title (P5 / BIGRec): one prompt; each candidate's answer is its target text, scored by summed
  (or mean, or calibrated) log-likelihood;
- letters (LlamaRec): one prompt listing the candidates as (A), (B), ...; score = the letter's
  log-probability at the answer position, one forward pass;
- yesno (TALLRec): one prompt per candidate; score = log P(Yes) - log P(No).
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
from llmrec.scoring.likelihood import reduce

if TYPE_CHECKING:
    from llmrec.data.queries import UserQuery
    from llmrec.scoring.rank import LLMRanker, Scored

Negatives = Callable[[int], list[str]]  # k distinct items the user never interacted with


def _scored(q: UserQuery, scores: np.ndarray, dropped: int, tokens: int) -> Scored:
    from llmrec.scoring.rank import Scored

    return Scored(q.user_id, q.candidates, scores, dropped, tokens)


@STYLES.register("title", shuffled=False, choices=False, draws=False)
class Title:
    """Log-likelihood of each candidate's text after one shared prompt."""

    def build(self, ps: PromptStyle, user_id: str, history: list[Interaction], items: list[str]) -> list[Scorable]:
        texts = [ps.target_text(i) for i in items]
        reserve = max(len(ps.tokenizer(t, add_special_tokens=False).input_ids) for t in texts) + 2
        prompt = ps.builder.build(history, reserve=reserve, user_id=user_id, **ps.user_vars(user_id))
        return [Scorable(prompt, [ps.builder.answer_ids(prompt, t) for t in texts])]

    def score(self, ranker: LLMRanker, queries: list[UserQuery]) -> list[Scored]:
        requests, built = [], []
        for q in queries:
            (s,), _ = ranker.scorables(q)
            requests.append(ScoreRequest(s.prompt.ids, s.answers))
            built.append(s.prompt)
        token_lps = ranker.backend.continuation_logprobs(requests)
        if ranker.scoring == "calibrated":
            ranker.fill_null({c for q in queries for c in q.candidates})
        out = []
        for q, prompt, lps in zip(queries, built, token_lps):
            null = [ranker.null[c] for c in q.candidates] if ranker.scoring == "calibrated" else None
            out.append(_scored(q, reduce(lps, ranker.scoring, null), prompt.dropped, len(prompt.ids)))
        return out

    def examples(self, ps: PromptStyle, rng: np.random.Generator, negatives: Negatives, user_id: str,
                 history: list[Interaction], target: str, n: int = 20) -> list[tuple]:
        (s,) = self.build(ps, user_id, history, [target])
        return [(s.prompt, s.answers[0], (target,), (target,), ())]


@STYLES.register("letters", shuffled=True, choices=True, draws=True)
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


@STYLES.register("yesno", shuffled=False, choices=True, draws=True)
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
