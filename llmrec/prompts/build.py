"""Turn a template plus a user's data into token ids, within a token budget.

The budget drops the oldest history items first (never candidates) until the prompt, plus room
for the longest scored continuation, fits `max_tokens`; the number dropped is reported so runs
can say how much history the model actually saw. Collaborative-vector slots (`| cf`) become the
slot table's ids here (`llmrec/prompts/slots.py`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from llmrec.data.dataset import Interaction, Item, timestamp_problem
from llmrec.errors import DataError, TemplateError
from llmrec.prompts.render import Template
from llmrec.prompts.slots import SlotIds, extract, fill


def item_vars(item: Item, rating: float | None = None, timestamp: float | None = None) -> dict[str, Any]:
    """What a template sees of an item. A timestamp without a date (inputs are checked when read,
    so this is a last guard) is a DataError naming it, not an OverflowError from `datetime`."""
    d = item.to_dict()
    if rating is not None and not math.isnan(rating):
        d["rating"] = int(rating) if float(rating).is_integer() else rating
    if timestamp is not None and not math.isnan(timestamp):
        if problem := timestamp_problem(timestamp):
            raise DataError(f"item {item.id!r}: timestamp {timestamp!r}: {problem}")
        d["timestamp"] = timestamp
        d["date"] = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    return d


def wrap_chat(template: Template, tokenizer, body: str) -> str:
    """A chat template's rendered text as the user turn of the tokenizer's chat template, after the
    header's `system` message if it has one, followed by its `answer_prefix`: the one wrapping for
    scored prompts and generated text alike."""
    messages = [{"role": "system", "content": template.header["system"]}] if "system" in template.header else []
    messages.append({"role": "user", "content": body})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text + template.header.get("answer_prefix", "")


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    ids: list[int]
    dropped: int  # oldest history items left out to fit the budget
    slot_ids: tuple[int, ...] = ()  # ids of the collaborative vectors, in prompt order (inside `ids`)


class PromptBuilder:
    """Renders a template for one tokenizer: chat wrapping, answer prefix, budget."""

    def __init__(self, template: Template, tokenizer, max_tokens: int, item_noun: str = "item",
                 slots: SlotIds | None = None, rating_scale: str = "1-5") -> None:
        self.template = template
        self.rating_scale = rating_scale
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.item_noun = item_noun
        self.slots = slots
        if template.uses_cf and slots is None:
            raise TemplateError(f"{template.path}: this template places collaborative vectors (| cf), and the "
                                "model has none: use an adapter trained with train.cf.vectors (model.adapter)")
        if template.chat and not getattr(tokenizer, "chat_template", None):
            raise TemplateError(f"{template.path}: a chat template (chat: true) needs a tokenizer with a chat "
                                "template; use the plain form of this template for this model")

    @property
    def add_special_tokens(self) -> bool:
        return not self.template.chat  # chat text already carries its special tokens

    def text(self, **variables: Any) -> str:
        return self.text_and_slots(**variables)[0]

    def text_and_slots(self, **variables: Any) -> tuple[str, tuple[int, ...]]:
        """The prompt text (placeholder tokens where vectors go) and the slot ids in order."""
        body = self.template.render(item_noun=self.item_noun, rating_scale=self.rating_scale, **variables)
        slot_ids: tuple[int, ...] = ()
        if self.slots is not None:
            body, keys = extract(body, self.slots.placeholder)
            slot_ids = tuple(self.slots.id_of(kind, key) for kind, key in keys)
        return (wrap_chat(self.template, self.tokenizer, body) if self.template.chat else body), slot_ids

    def encode(self, text: str, slot_ids: tuple[int, ...] = (), user_id: str = "?") -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=self.add_special_tokens).input_ids
        if self.slots is None:
            return ids
        return fill(ids, slot_ids, self.slots.placeholder_id, f"{self.template.path}: user {user_id}")

    def build(self, history: list[Interaction], reserve: int = 0, user_id: str = "?", **variables: Any) -> BuiltPrompt:
        """Render with as much recent history as fits `max_tokens - reserve`."""
        events = [item_vars(e.item, e.rating, e.timestamp) for e in history]
        limit = self.max_tokens - reserve

        def attempt(k: int) -> tuple[str, list[int], tuple[int, ...]]:
            text, slot_ids = self.text_and_slots(history=events[len(events) - k:], **variables)
            return text, self.encode(text, slot_ids, user_id), slot_ids

        text, ids, slot_ids = attempt(len(events))
        if len(ids) <= limit:
            return BuiltPrompt(text, ids, 0, slot_ids)
        lo, hi = 0, len(events) - 1  # find the largest k that fits
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            t, i, si = attempt(mid)
            if len(i) <= limit:
                best, lo = (mid, t, i, si), mid + 1
            else:
                hi = mid - 1
        if best is None:
            raise TemplateError(f"user {user_id}: the prompt needs {len(attempt(0)[1])} tokens even with an empty "
                                f"history, over the budget of {limit} ({self.max_tokens} minus {reserve} for the "
                                "answer); raise rank.max_prompt_tokens or shorten the template")
        k, text, ids, slot_ids = best
        return BuiltPrompt(text, ids, len(events) - k, slot_ids)

    def answer_ids(self, prompt: BuiltPrompt, answer: str) -> list[int]:
        """Token ids of `answer` after the prompt, as the joint tokenisation splits them.

        The one boundary rule for every style: a space is put before the answer unless the prompt
        ends in whitespace or an opening bracket, as a writer would; the ids are read off the
        tokenisation of prompt + answer, so merges across the boundary match what the model sees
        when the text is written out (" A" after "Answer:", "A" after "Answer: (").
        """
        text = answer if prompt.text.endswith((" ", "\n", "\t", "(")) else " " + answer
        whole = self.encode(prompt.text + text, prompt.slot_ids)
        if whole[:len(prompt.ids)] == prompt.ids and len(whole) > len(prompt.ids):
            return whole[len(prompt.ids):]
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return ids if self.slots is None else fill(ids, (), self.slots.placeholder_id, f"{self.template.path}: answer")
