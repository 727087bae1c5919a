"""Training examples: answer-only loss mask, no validation/test item leaks, balanced yes/no, seeded."""

import pytest

from llmrec.prompts.render import load_template
from llmrec.train.examples import IGNORE, build_examples, to_hf_dataset

pytestmark = pytest.mark.slow  # real tokenizer and ML-100K


def build(name, ml100k, split, tokenizer, **kw):
    args = {"history_len": 5, "n": 20, "max_users": 25, "seed": 0} | kw
    return build_examples(load_template(name), tokenizer, ml100k, split, **args)


@pytest.mark.parametrize("name", ["title/next_item_v1", "letters/candidates_v1", "yesno/will_like_chat_v1"])
def test_loss_only_on_answer_tokens(name, ml100k, ml100k_split, tokenizer):
    examples = build(name, ml100k, ml100k_split, tokenizer)
    assert examples
    for e in examples:
        assert len(e.input_ids) == len(e.labels)
        answer = [k for k, v in enumerate(e.labels) if v != IGNORE]
        # The answer is one contiguous run at the very end and its labels are the input tokens.
        assert answer and answer == list(range(len(e.labels) - len(answer), len(e.labels)))
        assert [e.labels[k] for k in answer] == e.input_ids[len(e.input_ids) - len(answer):]
        if not name.startswith("title"):
            assert len(answer) == 1


def test_letters_answer_names_the_target(ml100k, ml100k_split, tokenizer):
    for e in build("letters/candidates_v1", ml100k, ml100k_split, tokenizer, max_users=10):
        text = tokenizer.decode(e.input_ids)
        letter = tokenizer.decode(e.labels[-1:]).strip()
        target = ml100k.items[e.item_ids[-1]]  # candidates are listed with the target last
        assert f"({letter}) {target.title}" in text
        assert text.count("\n(") == 20


def test_no_validation_or_test_item_leaks(ml100k, ml100k_split, tokenizer):
    for name in ("title/next_item_v1", "letters/candidates_v1", "yesno/will_like_v1"):
        examples = build(name, ml100k, ml100k_split, tokenizer, prefixes_per_user=3)
        for e in examples:
            seq = ml100k_split[e.user_id]
            assert seq.test not in e.item_ids and seq.valid not in e.item_ids
        # Three prefixes per user: the targets are the last three training items, latest first.
        per_user = {}
        for e in examples:
            per_user.setdefault(e.user_id, []).append(e)
        assert all(len(v) == (3 if not name.startswith("yesno") else 6) for v in per_user.values())


def test_yesno_is_balanced_and_examples_are_seeded(ml100k, ml100k_split, tokenizer):
    ex = build("yesno/will_like_v1", ml100k, ml100k_split, tokenizer, max_users=10)
    words = [tokenizer.decode(e.labels[-1:]).strip() for e in ex]
    assert words.count("Yes") == words.count("No") == 10
    again = build("yesno/will_like_v1", ml100k, ml100k_split, tokenizer, max_users=10)
    other = build("yesno/will_like_v1", ml100k, ml100k_split, tokenizer, max_users=10, seed=1)
    assert [e.input_ids for e in again] == [e.input_ids for e in ex]
    assert [e.input_ids for e in other] != [e.input_ids for e in ex]
    ds = to_hf_dataset(ex)
    assert ds.column_names == ["user_id", "input_ids", "labels"] and len(ds) == 20
