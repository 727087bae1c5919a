"""The LLM ranker: template + tokenizer + backend -> one score per candidate.

Styles: `title` scores each candidate's text after one shared prompt, `letters` reads
all candidate letters from one forward pass, `yesno` reads log P(Yes) - log P(No) from one prompt
per candidate. Candidate order in list prompts is shuffled per user with the run seed, so the
retriever's order cannot leak into a position bias.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from llmrec.backends import Backend, ScoreRequest
from llmrec.data.dataset import Dataset
from llmrec.data.queries import UserQuery
from llmrec.prompts.build import BuiltPrompt
from llmrec.prompts.render import Template
from llmrec.prompts.slots import SlotIds
from llmrec.prompts.style import PromptStyle, Scorable, prompt_budget
from llmrec.scoring.likelihood import check_mode, reduce

__all__ = ["LLMRanker", "Scored", "UserQuery"]


@dataclass(frozen=True)
class Scored:
    user_id: str
    candidates: list[str]  # in the query's order
    scores: np.ndarray  # aligned with `candidates`; higher is better
    dropped: int  # history items left out by the token budget
    prompt_tokens: int  # longest prompt built for this user


class LLMRanker:
    """Scores users' candidates with one template; prompts come from the shared `PromptStyle`."""

    def __init__(self, template: Template, backend: Backend | None, tokenizer, dataset: Dataset, scoring: str = "sum",
                 max_prompt_tokens: int = 0, seed: int = 0, max_length: int | None = None,
                 slots: SlotIds | None = None) -> None:
        """`slots`: the collaborative-vector table of a `| cf` template; by default the backend's."""
        self.template = template
        self.backend = backend
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.scoring = check_mode(scoring)
        self.seed = seed
        context = backend.max_length if backend is not None else int(max_length or 2048)
        slots = slots if slots is not None else getattr(backend, "slots", None)
        self.prompts = PromptStyle(template, tokenizer, dataset, prompt_budget(max_prompt_tokens, context), slots)
        self._null_prompt: BuiltPrompt | None = None
        self._null: dict[str, float] = {}  # item id -> log P(text | content-free prompt)

    def shuffled(self, q: UserQuery) -> list[int]:
        """Deterministic per (seed, user) order of candidates in a list prompt."""
        rng = np.random.default_rng([self.seed, zlib.crc32(q.user_id.encode())])
        return list(rng.permutation(len(q.candidates)))

    def scorables(self, q: UserQuery) -> tuple[list[Scorable], list[int]]:
        """The scored sequences of one user and the candidate order shown in a list prompt
        (letters: position j shows candidate order[j]; identity for the other styles)."""
        order = self.shuffled(q) if self.template.style == "letters" else list(range(len(q.candidates)))
        return self.prompts.build(q.user_id, q.history, [q.candidates[k] for k in order]), order

    def build_prompts(self, q: UserQuery) -> tuple[list[BuiltPrompt], list[int]]:
        """The prompt(s) of one user: one for title/letters, one per candidate for yes/no."""
        built, order = self.scorables(q)
        return [s.prompt for s in built], order

    def score(self, queries: list[UserQuery]) -> list[Scored]:
        """Score several users in one backend call (the backend batches across them).

        A collaborative table with a residual adds its offset (alpha times the baseline's score)
        to every candidate's score, as in training (`llmrec/models/cf.py`).
        """
        style = self.template.style
        if style == "title":
            out = self._title(queries)
        elif style == "letters":
            out = self._letters(queries)
        else:
            out = self._yesno(queries)
        slots = self.prompts.builder.slots
        if slots is not None and getattr(slots, "residual", False):
            out = [replace(s, scores=s.scores + slots.offsets(s.user_id, s.candidates)) for s in out]
        return out

    # -- title ----------------------------------------------------------------------------
    def _title(self, queries: list[UserQuery]) -> list[Scored]:
        requests, built = [], []
        for q in queries:
            (s,), _ = self.scorables(q)
            requests.append(ScoreRequest(s.prompt.ids, s.answers))
            built.append(s.prompt)
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
            self._null_prompt = self.prompts.null_prompt()
        missing = sorted(i for i in items if i not in self._null)
        if not missing:
            return
        conts = [self.prompts.builder.answer_ids(self._null_prompt, self.prompts.target_text(i)) for i in missing]
        (lps,) = self.backend.continuation_logprobs([ScoreRequest(self._null_prompt.ids, conts)])
        for i, lp in zip(missing, lps):
            self._null[i] = float(lp.sum())

    # -- letters --------------------------------------------------------------------------
    def _letters(self, queries: list[UserQuery]) -> list[Scored]:
        prompts, tokens, orders, built = [], [], [], []
        for q in queries:
            (s,), order = self.scorables(q)
            prompts.append(s.prompt.ids)
            tokens.append([a[0] for a in s.answers])
            orders.append(order)
            built.append(s.prompt)
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
            built, _ = self.scorables(q)
            ids = [s.prompt.ids for s in built]
            shared = _common_prefix(ids)
            conts = []
            for s in built:
                suffix = s.prompt.ids[shared:]
                conts += [suffix + answer for answer in s.answers]  # [..., Yes], [..., No]
            requests.append(ScoreRequest(ids[0][:shared], conts))
            meta.append((max(s.prompt.dropped for s in built), max(len(s.prompt.ids) for s in built)))
        out = []
        for q, (dropped, longest), lps in zip(queries, meta, self.backend.continuation_logprobs(requests)):
            scores = np.array([lps[2 * k][-1] - lps[2 * k + 1][-1] for k in range(len(q.candidates))])
            out.append(Scored(q.user_id, q.candidates, scores, dropped, longest))
        return out

    def _yesno_prompts(self, queries: list[UserQuery]) -> list[Scored]:
        prompts, tokens, meta = [], [], []
        for q in queries:
            built, _ = self.scorables(q)
            for s in built:
                prompts.append(s.prompt.ids)
                tokens.append([a[0] for a in s.answers])
            meta.append((len(built), max(s.prompt.dropped for s in built), max(len(s.prompt.ids) for s in built)))
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
