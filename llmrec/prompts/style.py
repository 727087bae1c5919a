"""One prompt path for ranking and training: what a template's style turns a user into.

Ranking (`llmrec.scoring.rank`) and training (`llmrec.train.examples`) both call `PromptStyle.build`,
so an adapter is always trained on exactly the token sequences that ranking later scores (the same
user variables, letter labels, budget reserve and answer-token boundary). What each style builds
is its registered class's (`llmrec.registry.STYLES`, the built-ins in `llmrec/scoring/styles.py`);
this module holds what every style shares: the user's variables, an item's target text, single
answer tokens and the content-free prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmrec.data.dataset import Dataset, Interaction
from llmrec.errors import TemplateError
from llmrec.prompts.build import BuiltPrompt, PromptBuilder, item_vars
from llmrec.prompts.render import EOS, Template
from llmrec.prompts.slots import SlotIds
from llmrec.registry import STYLES


def prompt_budget(max_prompt_tokens: int, context: int) -> int:
    """Prompt tokens allowed: `rank.max_prompt_tokens` (0: no own limit), never past the context."""
    return min(max_prompt_tokens or context, context)


@dataclass(frozen=True)
class Scorable:
    """A prompt and the token sequences scored after it, in a fixed order per style (see module doc)."""

    prompt: BuiltPrompt
    answers: list[list[int]]


class PromptStyle:
    """A template bound to a tokenizer, a budget and a dataset's items and user profiles."""

    def __init__(self, template: Template, tokenizer, dataset: Dataset, max_tokens: int,
                 slots: SlotIds | None = None) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.builder = PromptBuilder(template, tokenizer, max_tokens, dataset.item_noun, slots,
                                     dataset.rating_scale)
        self.style_impl = STYLES.get(template.style)()
        self._single: dict[tuple[str, str], int] = {}
        self._targets: dict[tuple[str, str], list[int]] = {}  # (prompt's end, item) -> answer ids
        self._lengths: dict[str, int] = {}  # item -> tokens of its answer on its own (the prompt budget's reserve)

    @property
    def style(self) -> str:
        return self.template.style

    def user_vars(self, user_id: str) -> dict[str, Any]:
        """`user` as templates see it: the id plus the dataset's profile fields."""
        return {"user": {"id": user_id, **self.dataset.users.get(user_id, {})}}

    def target_text(self, item_id: str) -> str:
        """The scored text of an item (title style), from the template's `target` header."""
        return self.template.render_target(item_vars(self.dataset.items[item_id]))

    def target_ids(self, prompt: BuiltPrompt, item_id: str) -> list[int]:
        """The token ids scored for an item after `prompt` (title style): its target text and the
        template's `end`, tokenised as the model sees them after the prompt. Cached by the prompt's
        last characters (the boundary depends only on how the prompt ends), so a catalogue of
        thousands of items is tokenised once per template, not once per user."""
        key = (prompt.text[-32:], item_id)
        if key not in self._targets:
            end = self.template.end
            text = self.target_text(item_id)
            if end == EOS:
                ids = [*self.builder.answer_ids(prompt, text), self.tokenizer.eos_token_id]
            else:
                ids = self.builder.answer_ids(prompt, text + end)
            self._targets[key] = ids
        return self._targets[key]

    def target_length(self, item_id: str) -> int:
        """Tokens of an item's answer tokenised on its own: what a prompt leaves room for."""
        if item_id not in self._lengths:
            end = self.template.end
            text = self.target_text(item_id) + ("" if end == EOS else end)
            self._lengths[item_id] = len(self.tokenizer(text, add_special_tokens=False).input_ids) + (end == EOS)
        return self._lengths[item_id]

    def answer_token(self, prompt: BuiltPrompt, answer: str) -> int:
        """The single token the model emits for `answer` after `prompt` (letters, Yes/No)."""
        key = (prompt.text[-16:], answer)  # the boundary only depends on how the prompt ends
        if key not in self._single:
            ids = self.builder.answer_ids(prompt, answer)
            if len(ids) != 1:
                raise TemplateError(f"{self.template.path}: answer {answer!r} is not a single token after the "
                                    f"prompt (got {len(ids)} tokens); end the prompt so that it is, e.g. "
                                    "with 'Answer: ('")
            self._single[key] = ids[0]
        return self._single[key]

    def build(self, user_id: str, history: list[Interaction], items: list[str]) -> list[Scorable]:
        """The scored sequences for one user, as the template's registered style builds them: one
        Scorable (title, letters) or one per item (yesno). `items` are shown in the order given: a
        caller that wants a shuffled list shuffles first."""
        items_of = self.dataset.items  # history entries read as this dataset's items (e.g. with their codes)
        history = [e if items_of.get(e.item.id, e.item) is e.item else Interaction(items_of[e.item.id], e.rating,
                                                                                    e.timestamp) for e in history]
        return self.style_impl.build(self, user_id, history, items)

    def null_prompt(self) -> BuiltPrompt:
        """The template with an empty history and no user: the content-free prompt of calibration."""
        return self.builder.build([], user_id="<content-free>", user={"id": ""})
