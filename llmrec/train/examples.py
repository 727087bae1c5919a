"""Training examples rendered from the same template files that scoring uses.

For each user, the target is an item from the *training* part of the split (never the validation
or test item) and the history is what came before it; `prefixes_per_user` > 1 adds earlier
prefixes (the latest first). With `targets="valid"` the target is the user's validation item and
the history the training items: the choice for collaborative-vector templates, whose vectors were
fitted on the training items, so a training target there would carry a score inflated by the
fit (a test item's never is). `draws` > 1 repeats each target with fresh negatives and order.
Each style makes its own examples (`examples` of its class in `llmrec/scoring/styles.py`):
- title: prompt -> the target's text (loss on its tokens);
- letters: the target among `n - 1` sampled negatives the user never interacted with, shuffled,
  -> its letter;
- yesno: one positive (target, "Yes") and one sampled negative ("No") per prefix, balanced.
Only answer tokens carry a loss (labels are -100 elsewhere).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from llmrec.data.dataset import Dataset, Interaction
from llmrec.data.split import Split, UserSequence
from llmrec.prompts.render import Template
from llmrec.prompts.slots import SlotIds
from llmrec.prompts.style import PromptStyle
from llmrec.registry import STYLES

IGNORE = -100


@dataclass(frozen=True)
class Example:
    user_id: str
    input_ids: list[int]
    labels: list[int]
    item_ids: tuple[str, ...]  # every item the example shows (history, candidates, target), for audits
    shown: tuple[str, ...] = ()  # the scored items in prompt order (title: target; letters: list; yesno: item)
    choices: tuple[int, ...] = ()  # letters: the letter tokens in prompt order; yesno: (Yes, No); title: ()
    choice: int = -1  # index of the right answer in `choices`


def _negatives(rng: np.random.Generator, universe: np.ndarray, seen: set[str], k: int) -> list[str]:
    """`k` distinct items the user never interacted with (in any part of the split)."""
    picks: list[str] = []
    while len(picks) < k:
        cand = str(universe[rng.integers(len(universe))])
        if cand not in seen and cand not in picks:
            picks.append(cand)
    return picks


def _events(ds: Dataset, seq: UserSequence, end: int, history_len: int) -> list[Interaction]:
    """The `history_len` interactions before index `end`, as ranking's `UserSequence.events` gives them."""
    start = max(0, end - history_len)
    return [Interaction(ds.items[seq.items[k]], seq.ratings[k], seq.timestamps[k]) for k in range(start, end)]


def build_examples(template: Template, tokenizer, ds: Dataset, split: Split, *, history_len: int, n: int,
                   prefixes_per_user: int = 1, max_users: int = 0, max_tokens: int = 2048,
                   seed: int = 0, targets: str = "train", draws: int = 1, slots: SlotIds | None = None) -> list[Example]:
    """Examples for every user (or the first `max_users`), deterministic for a seed.

    Prompts and answers come from `PromptStyle.build`, the very call the ranker makes, so
    `max_tokens` should be the budget ranking uses (`prompt_budget` of the model's context).
    """
    style = PromptStyle(template, tokenizer, ds, max_tokens, slots)
    repeats = STYLES.entry(template.style).capabilities.get("draws", False)  # a target drawn again: new negatives
    universe = np.array(sorted({i for s in split for i in s.items}))
    out: list[Example] = []
    users = list(split)[: max_users or None]
    for seq in users:
        rng = np.random.default_rng([seed, zlib.crc32(seq.user_id.encode())])
        seen = set(seq.items)
        n_train = len(seq.train)
        if targets == "valid":
            ends = [n_train]  # the validation item follows the training items
        else:
            ends = [n_train - 1 - back for back in range(min(prefixes_per_user, n_train - 1))]
        for t in ends:  # target index; history = items[:t]
            target = seq.items[t]
            history = _events(ds, seq, t, history_len)
            shown_history = tuple(seq.items[max(0, t - history_len):t])
            for _ in range(draws if repeats else 1):
                negatives = functools.partial(_negatives, rng, universe, seen)  # k -> k unseen items
                for prompt, answer, items, scored, choices in style.style_impl.examples(
                        style, rng, negatives, seq.user_id, history, target, n):
                    out.append(Example(seq.user_id, prompt.ids + answer, [IGNORE] * len(prompt.ids) + answer,
                                       shown_history[prompt.dropped:] + items, scored, choices,
                                       choices.index(answer[0]) if choices else -1))
    return out


def to_hf_dataset(examples: list[Example], offsets: list[list[float]] | None = None,
                  text: list[Example] | None = None):
    """A Hugging Face `datasets.Dataset` with input_ids / labels columns (tokenised once).

    With `offsets` (per example, one score offset per answer choice: the collaborative residual)
    it also holds `choices`, `choice` and `offsets`, which the choice loss reads. With `text` (the
    same examples from a text-only twin template) it holds their `text_input_ids` / `text_labels`,
    which a curriculum swaps in.
    """
    import datasets

    columns = {
        "user_id": [e.user_id for e in examples],
        "input_ids": [e.input_ids for e in examples],
        "labels": [e.labels for e in examples],
    }
    if text is not None:
        columns.update(text_input_ids=[e.input_ids for e in text], text_labels=[e.labels for e in text])
    if offsets is not None:
        columns.update(choices=[list(e.choices) for e in examples], choice=[e.choice for e in examples],
                       offsets=offsets)
    return datasets.Dataset.from_dict(columns)
