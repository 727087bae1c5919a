"""The LLM ranker: template + tokenizer + backend -> one score per candidate.

How a template's style builds and scores is the style's own (`llmrec/scoring/styles.py`: title,
letters, yes/no); the ranker holds what they share: the prompt budget, the seeded per-user order
of a list prompt (so the retriever's order cannot leak into a position bias), the stage whose
collaborative vectors are read, the calibration cache and the residual.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from llmrec.backends import Backend, ScoreRequest
from llmrec.data.dataset import Dataset
from llmrec.data.queries import UserQuery
from llmrec.errors import ConfigError
from llmrec.prompts.build import BuiltPrompt
from llmrec.prompts.render import Template
from llmrec.prompts.slots import SlotIds
from llmrec.prompts.style import PromptStyle, Scorable, prompt_budget
from llmrec.registry import STYLES
from llmrec.scoring.catalogue import TokenTrie, trie_scores
from llmrec.scoring.likelihood import check_mode

__all__ = ["LLMRanker", "Scored", "UserQuery"]

TRIE_FROM = 64  # title-style lists longer than this go through their token trie (rank.trie = "auto")


@dataclass(frozen=True)
class Scored:
    user_id: str
    candidates: list[str]  # in the query's order
    scores: np.ndarray  # aligned with `candidates`; higher is better
    dropped: int  # history items left out by the token budget
    prompt_tokens: int  # longest prompt built for this user
    shown: tuple[int, ...] = ()  # list styles: the position each candidate had in the (first) prompt

    def position(self, item: str | None) -> dict[str, int]:
        """`{"target_position": p}` for a ranks row: where `item` stood in the list prompt ({} if unknown)."""
        if not self.shown or item is None or item not in self.candidates:
            return {}
        return {"target_position": int(self.shown[self.candidates.index(item)])}


class LLMRanker:
    """Scores users' candidates with one template; prompts come from the shared `PromptStyle`."""

    def __init__(self, template: Template, backend: Backend | None, tokenizer, dataset: Dataset, scoring: str = "sum",
                 max_prompt_tokens: int = 0, seed: int = 0, max_length: int | None = None,
                 slots: SlotIds | None = None, stage: str = "test", owns_backend: bool = False,
                 trie: str = "auto", shuffles: int = 1) -> None:
        """`slots`: the collaborative-vector table of a `| cf` template (default: the backend's);
        `stage`: whose targets are scored (`test` or `valid`: which user vectors slots read);
        `owns_backend`: `close()` also closes the backend; `trie`: score a title-style candidate list
        through its token trie (`auto`: lists longer than `TRIE_FROM`; `always`; `never`); `shuffles`:
        list styles score that many seeded orders of each list and average (position-bias control)."""
        self.template = template
        self.backend = backend
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.scoring = check_mode(scoring)
        self.seed = seed
        self.stage = stage
        self.owns_backend = owns_backend
        self.trie = trie
        self.shuffles = shuffles
        self._pass = 0  # which of the `shuffles` orders `shuffled` gives
        if shuffles > 1 and not STYLES.entry(template.style).capabilities.get("shuffled"):
            raise ConfigError(f"rank.shuffles={shuffles}: {template.name} is {template.style} style, whose prompt "
                              "shows no list order to shuffle; use a letters template")
        context = backend.max_length if backend is not None else int(max_length or 2048)
        slots = slots if slots is not None else (backend.slots if backend is not None else None)
        self.prompts = PromptStyle(template, tokenizer, dataset, prompt_budget(max_prompt_tokens, context), slots)
        self._null_prompt: BuiltPrompt | None = None
        self.null: dict[str, float] = {}  # item id -> log P(text | content-free prompt)

    def generate(self, queries: list[UserQuery], k: int, beams: int) -> list[Scored]:
        """Each user's top `k` candidates by beam search over their token trie (`Scored.candidates`:
        the items found, best first), for styles that generate (title; `llmrec/scoring/styles.py`)."""
        if not STYLES.entry(self.template.style).capabilities.get("generates"):
            raise ConfigError(f"rank.beam: {self.template.name} is {self.template.style} style, which scores a "
                              "given list and cannot generate items; use a title or sid style template")
        slots = self.prompts.builder.slots
        if slots is not None:
            slots.set_stage(self.stage)
        return self.prompts.style_impl.generate(self, queries, k, beams)

    def use_trie(self, n_candidates: int) -> bool:
        """Whether a title-style list of this length is scored through its trie."""
        return self.trie == "always" or (self.trie == "auto" and n_candidates > TRIE_FROM)

    def close(self) -> None:
        """Shut down the backend if this ranker built it (`llmrec.scoring.build.build_ranker`)."""
        if self.owns_backend and self.backend is not None:
            self.backend.close()

    def shuffled(self, q: UserQuery) -> list[int]:
        """Deterministic per (seed, user) order of candidates in a list prompt; the later orders of
        `rank.shuffles` add the pass number to the seed."""
        key = [self.seed, zlib.crc32(q.user_id.encode())] + ([self._pass] if self._pass else [])
        return list(np.random.default_rng(key).permutation(len(q.candidates)))

    def scorables(self, q: UserQuery) -> tuple[list[Scorable], list[int]]:
        """The scored sequences of one user and the candidate order shown in a list prompt
        (a `shuffled` style shows candidate order[j] at position j; identity for the others)."""
        shuffled = STYLES.entry(self.template.style).capabilities.get("shuffled", False)
        order = self.shuffled(q) if shuffled else list(range(len(q.candidates)))
        return self.prompts.build(q.user_id, q.history, [q.candidates[k] for k in order]), order

    def build_prompts(self, q: UserQuery) -> tuple[list[BuiltPrompt], list[int]]:
        """The prompt(s) of one user: one for title/letters, one per candidate for yes/no."""
        built, order = self.scorables(q)
        return [s.prompt for s in built], order

    def score(self, queries: list[UserQuery]) -> list[Scored]:
        """Score several users in one backend call (the backend batches across them), as the
        template's style scores (`llmrec/scoring/styles.py`).

        A collaborative table with a residual adds its offset (alpha times the baseline's score)
        to every candidate's score, as in training (`llmrec/models/cf.py`).
        """
        slots = self.prompts.builder.slots
        if slots is not None:
            slots.set_stage(self.stage)  # the table may be shared: set before every call
        out = self.prompts.style_impl.score(self, queries)
        if STYLES.entry(self.template.style).capabilities.get("shuffled"):
            out = [replace(s, shown=tuple(np.argsort(self.shuffled(q)))) for s, q in zip(out, queries)]
            for p in range(1, self.shuffles):  # the same lists in other orders: average the scores
                self._pass = p
                try:
                    again = self.prompts.style_impl.score(self, queries)
                finally:
                    self._pass = 0
                out = [replace(s, scores=s.scores + (a.scores - s.scores) / (p + 1)) for s, a in zip(out, again)]
        if slots is not None and slots.residual:
            out = [replace(s, scores=s.scores + slots.offsets(s.user_id, s.candidates)) for s in out]
        return out

    def fill_null(self, items: set[str]) -> None:
        """Log P(item text | content-free prompt) into `null`, computed once per item for the whole run
        (the `calibrated` scoring mode); many items at once go through their trie."""
        if self._null_prompt is None:
            self._null_prompt = self.prompts.null_prompt()
        missing = sorted(i for i in items if i not in self.null)
        if not missing:
            return
        conts = [self.prompts.target_ids(self._null_prompt, i) for i in missing]
        if self.use_trie(len(missing)):
            by_item = trie_scores(self.backend, self._null_prompt.ids, TokenTrie.build(dict(zip(missing, conts))))
            lps = [by_item[i] for i in missing]
        else:
            (lps,) = self.backend.continuation_logprobs([ScoreRequest(self._null_prompt.ids, conts)])
        for i, lp in zip(missing, lps):
            self.null[i] = float(lp.sum())
