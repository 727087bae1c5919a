"""The LLM ranker: template + tokenizer + backend -> one score per candidate.

Styles (DESIGN.md): `title` scores each candidate's text after one shared prompt, `letters` reads
all candidate letters from one forward pass, `yesno` reads log P(Yes) - log P(No) from one prompt
per candidate. Candidate order in list prompts is shuffled per user with the run seed, so the
retriever's order cannot leak into a position bias.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from llmrec.backends import Backend, ScoreRequest
from llmrec.data.dataset import Dataset, Interaction
from llmrec.prompts.build import BuiltPrompt, PromptBuilder, item_vars
from llmrec.prompts.render import Template
from llmrec.prompts.verbalize import answer_token, letters
from llmrec.scoring.likelihood import check_mode, reduce


@dataclass(frozen=True)
class UserQuery:
    user_id: str
    history: list[Interaction]
    candidates: list[str]


@dataclass(frozen=True)
class Scored:
    user_id: str
    candidates: list[str]  # in the query's order
    scores: np.ndarray  # aligned with `candidates`; higher is better
    dropped: int  # history items left out by the token budget
    prompt_tokens: int  # longest prompt built for this user


class LLMRanker:
    def __init__(self, template: Template, backend: Backend | None, tokenizer, dataset: Dataset, scoring: str = "sum",
                 max_prompt_tokens: int = 0, seed: int = 0, max_length: int | None = None) -> None:
        self.template = template
        self.backend = backend
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.scoring = check_mode(scoring)
        self.seed = seed
        context = backend.max_length if backend is not None else int(max_length or 2048)
        budget = min(max_prompt_tokens or context, context)
        self.builder = PromptBuilder(template, tokenizer, budget, dataset.item_noun)
        self._null_prompt: BuiltPrompt | None = None
        self._null: dict[str, float] = {}  # item id -> log P(text | content-free prompt)
        self._answer_cache: dict[tuple[str, str], int] = {}

    # -- shared ---------------------------------------------------------------------------
    def _user_vars(self, user_id: str) -> dict:
        return {"user": {"id": user_id, **self.dataset.users.get(user_id, {})}}

    def _answer(self, prompt_text: str, answer: str) -> int:
        key = (prompt_text[-16:], answer)  # the token only depends on how the prompt ends
        if key not in self._answer_cache:
            self._answer_cache[key] = answer_token(self.tokenizer, prompt_text, answer,
                                                   self.builder.add_special_tokens, str(self.template.path))
        return self._answer_cache[key]

    def shuffled(self, q: UserQuery) -> list[int]:
        """Deterministic per (seed, user) order of candidates in a list prompt."""
        rng = np.random.default_rng([self.seed, zlib.crc32(q.user_id.encode())])
        return list(rng.permutation(len(q.candidates)))

    def build_prompts(self, q: UserQuery) -> tuple[list[BuiltPrompt], list[int]]:
        """The prompt(s) of one user: one for title/letters, one per candidate for yes/no.

        Also returns the candidate order used in a list prompt (identity for other styles).
        """
        style, uvars = self.template.style, self._user_vars(q.user_id)
        if style == "title":
            targets = [self._target(c) for c in q.candidates]
            reserve = max(len(self.tokenizer(t, add_special_tokens=False).input_ids) for t in targets) + 2
            return [self.builder.build(q.history, reserve=reserve, user_id=q.user_id, **uvars)], list(range(len(q.candidates)))
        if style == "letters":
            order = self.shuffled(q)
            labels = letters(len(q.candidates))
            cands = [dict(item_vars(self.dataset.items[q.candidates[k]]), letter=labels[j]) for j, k in enumerate(order)]
            return [self.builder.build(q.history, reserve=1, user_id=q.user_id, candidates=cands, **uvars)], order
        prompts = [self.builder.build(q.history, reserve=1, user_id=q.user_id,
                                      candidate=item_vars(self.dataset.items[c]), **uvars) for c in q.candidates]
        return prompts, list(range(len(q.candidates)))

    def score(self, queries: list[UserQuery]) -> list[Scored]:
        """Score several users in one backend call (the backend batches across them)."""
        style = self.template.style
        if style == "title":
            return self._title(queries)
        if style == "letters":
            return self._letters(queries)
        return self._yesno(queries)

    # -- title ----------------------------------------------------------------------------
    def _target(self, item_id: str) -> str:
        return self.template.render_target(item_vars(self.dataset.items[item_id]))

    def _title(self, queries: list[UserQuery]) -> list[Scored]:
        requests, built = [], []
        for q in queries:
            (prompt,), _ = self.build_prompts(q)
            conts = [self.builder.continuation(prompt, self._target(c)) for c in q.candidates]
            requests.append(ScoreRequest(prompt.ids, conts))
            built.append(prompt)
        token_lps = self.backend.continuation_logprobs(requests)
        if self.scoring == "calibrated":
            self._fill_null({c for q in queries for c in q.candidates})
        out = []
        for q, prompt, lps in zip(queries, built, token_lps):
            null = [self._null[c] for c in q.candidates] if self.scoring == "calibrated" else None
            out.append(Scored(q.user_id, q.candidates, reduce(lps, self.scoring, null), prompt.dropped, len(prompt.ids)))
        return out

    def _fill_null(self, items: set[str]) -> None:
        """Log P(item text | content-free prompt), computed once per item for the whole run."""
        if self._null_prompt is None:
            self._null_prompt = self.builder.build([], user_id="<content-free>", user={"id": ""})
        missing = sorted(i for i in items if i not in self._null)
        if not missing:
            return
        conts = [self.builder.continuation(self._null_prompt, self._target(i)) for i in missing]
        (lps,) = self.backend.continuation_logprobs([ScoreRequest(self._null_prompt.ids, conts)])
        for i, lp in zip(missing, lps):
            self._null[i] = float(lp.sum())

    # -- letters --------------------------------------------------------------------------
    def _letters(self, queries: list[UserQuery]) -> list[Scored]:
        prompts, tokens, orders, built = [], [], [], []
        for q in queries:
            (prompt,), order = self.build_prompts(q)
            labels = letters(len(q.candidates))
            prompts.append(prompt.ids)
            tokens.append([self._answer(prompt.text, label) for label in labels])
            orders.append(order)
            built.append(prompt)
        lps = self.backend.next_token_logprobs(prompts, tokens)
        out = []
        for q, order, lp, prompt in zip(queries, orders, lps, built):
            scores = np.empty(len(q.candidates))
            scores[order] = lp  # letter j labels candidate order[j]
            out.append(Scored(q.user_id, q.candidates, scores, prompt.dropped, len(prompt.ids)))
        return out

    # -- yes/no ---------------------------------------------------------------------------
    def _yesno(self, queries: list[UserQuery]) -> list[Scored]:
        """One prompt per candidate, but the prompts share the history: their common token prefix
        is computed once and each candidate's question (+ the Yes or No token) is a continuation,
        so log P(Yes) and log P(No) are the last token of two continuations. A backend that reuses
        shared prefixes by itself (vLLM's prefix cache) gets the whole prompts and reads the two
        answer tokens as next-token log-probabilities instead."""
        if getattr(self.backend, "caches_prefixes", False):
            return self._yesno_prompts(queries)
        requests, meta = [], []
        for q in queries:
            built, _ = self.build_prompts(q)
            ids = [p.ids for p in built]
            shared = _common_prefix(ids)
            conts = []
            for prompt in built:
                yes, no = self._answer(prompt.text, "Yes"), self._answer(prompt.text, "No")
                suffix = prompt.ids[shared:]
                conts += [suffix + [yes], suffix + [no]]
            requests.append(ScoreRequest(ids[0][:shared], conts))
            meta.append((max(p.dropped for p in built), max(len(p.ids) for p in built)))
        out = []
        for q, (dropped, longest), lps in zip(queries, meta, self.backend.continuation_logprobs(requests)):
            scores = np.array([lps[2 * k][-1] - lps[2 * k + 1][-1] for k in range(len(q.candidates))])
            out.append(Scored(q.user_id, q.candidates, scores, dropped, longest))
        return out

    def _yesno_prompts(self, queries: list[UserQuery]) -> list[Scored]:
        prompts, tokens, meta = [], [], []
        for q in queries:
            built, _ = self.build_prompts(q)
            for prompt in built:
                prompts.append(prompt.ids)
                tokens.append([self._answer(prompt.text, "Yes"), self._answer(prompt.text, "No")])
            meta.append((len(built), max(p.dropped for p in built), max(len(p.ids) for p in built)))
        lps = iter(self.backend.next_token_logprobs(prompts, tokens))
        out = []
        for q, (n, dropped, longest) in zip(queries, meta):
            scores = np.array([lp[0] - lp[1] for lp in (next(lps) for _ in range(n))])
            out.append(Scored(q.user_id, q.candidates, scores, dropped, longest))
        return out


def _common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix, leaving every sequence at least one token of its own."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 1)
