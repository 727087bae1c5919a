"""Training examples rendered from the same template files that scoring uses.

For each user, the target is an item from the *training* part of the split (never the validation
or test item) and the history is what came before it; `prefixes_per_user` > 1 adds earlier
prefixes (the latest first). Per style:
- title: prompt -> the target's text (loss on its tokens);
- letters: the target among `n - 1` sampled negatives the user never interacted with, shuffled,
  -> its letter;
- yesno: one positive (target, "Yes") and one sampled negative ("No") per prefix, balanced.
Only answer tokens carry a loss (labels are -100 elsewhere).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from llmrec.data.dataset import Dataset, Interaction
from llmrec.data.split import Split, UserSequence
from llmrec.prompts.build import PromptBuilder, item_vars
from llmrec.prompts.render import Template
from llmrec.prompts.verbalize import answer_token, letters

IGNORE = -100


@dataclass(frozen=True)
class Example:
    user_id: str
    input_ids: list[int]
    labels: list[int]
    item_ids: tuple[str, ...]  # every item the example shows (history, candidates, target), for audits


def _negatives(rng: np.random.Generator, universe: np.ndarray, seen: set[str], k: int) -> list[str]:
    """`k` distinct items the user never interacted with (in any part of the split)."""
    picks: list[str] = []
    while len(picks) < k:
        cand = str(universe[rng.integers(len(universe))])
        if cand not in seen and cand not in picks:
            picks.append(cand)
    return picks


def _events(ds: Dataset, seq: UserSequence, end: int, history_len: int) -> list[Interaction]:
    start = max(0, end - history_len)
    return [Interaction(ds.items[seq.items[k]], seq.ratings[k], seq.timestamps[k]) for k in range(start, end)]


def build_examples(template: Template, tokenizer, ds: Dataset, split: Split, *, history_len: int, n: int,
                   prefixes_per_user: int = 1, max_users: int = 0, max_tokens: int = 2048,
                   seed: int = 0) -> list[Example]:
    """Examples for every user (or the first `max_users`), deterministic for a seed."""
    builder = PromptBuilder(template, tokenizer, max_tokens, ds.item_noun)
    universe = np.array(sorted({i for s in split for i in s.items}))
    out: list[Example] = []
    users = list(split)[: max_users or None]
    for seq in users:
        rng = np.random.default_rng([seed, zlib.crc32(seq.user_id.encode())])
        seen = set(seq.items)
        uvars = {"user": {"id": seq.user_id, **ds.users.get(seq.user_id, {})}}
        n_train = len(seq.train)
        for back in range(min(prefixes_per_user, n_train - 1)):
            t = n_train - 1 - back  # target index inside the training part; history = items[:t]
            target = seq.items[t]
            history = _events(ds, seq, t, history_len)
            shown_history = tuple(seq.items[max(0, t - history_len):t])

            if template.style == "title":
                text = template.render_target(item_vars(ds.items[target]))
                reserve = len(tokenizer(text, add_special_tokens=False).input_ids) + 2
                prompt = builder.build(history, reserve=reserve, user_id=seq.user_id, **uvars)
                answers = [(prompt, builder.continuation(prompt, text), (target,))]
            elif template.style == "letters":
                cands = _negatives(rng, universe, seen, n - 1) + [target]
                order = rng.permutation(len(cands))
                labels_ = letters(len(cands))
                shown = [dict(item_vars(ds.items[cands[k]]), letter=labels_[j]) for j, k in enumerate(order)]
                prompt = builder.build(history, reserve=1, user_id=seq.user_id, candidates=shown, **uvars)
                letter = labels_[int(np.flatnonzero(order == len(cands) - 1)[0])]
                tok = answer_token(tokenizer, prompt.text, letter, builder.add_special_tokens, str(template.path))
                answers = [(prompt, [tok], tuple(cands))]
            else:
                answers = []
                for item, word in ((target, "Yes"), (_negatives(rng, universe, seen, 1)[0], "No")):
                    prompt = builder.build(history, reserve=1, user_id=seq.user_id,
                                           candidate=item_vars(ds.items[item]), **uvars)
                    tok = answer_token(tokenizer, prompt.text, word, builder.add_special_tokens, str(template.path))
                    answers.append((prompt, [tok], (item,)))
            for prompt, answer, items in answers:
                out.append(Example(seq.user_id, prompt.ids + answer, [IGNORE] * len(prompt.ids) + answer,
                                   shown_history[prompt.dropped:] + items))
    return out


def to_hf_dataset(examples: list[Example]):
    """A Hugging Face `datasets.Dataset` with input_ids / labels columns (tokenised once)."""
    import datasets

    return datasets.Dataset.from_dict({
        "user_id": [e.user_id for e in examples],
        "input_ids": [e.input_ids for e in examples],
        "labels": [e.labels for e in examples],
    })
