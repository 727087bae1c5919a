"""One prompt path: a training example is token for token what the ranker scores for that user."""

import numpy as np
import pytest

from llmrec.prompts.render import list_templates, load_template
from llmrec.scoring.rank import LLMRanker, UserQuery
from llmrec.scoring.styles import STYLES
from llmrec.sid.codes import assign, with_codes
from llmrec.train.examples import _events, build_examples

pytestmark = pytest.mark.slow  # real tokenizer and ML-100K


@pytest.mark.parametrize("name", list_templates())
def test_training_examples_equal_ranking_prompts(name, ml100k, ml100k_split, tokenizer, cf_slots):
    template = load_template(name)
    slots = cf_slots if template.uses_cf else None
    caps = STYLES.entry(template.style).capabilities
    if caps.get("needs_sid"):  # codes from random vectors: the prompt path, not their quality, is tested here
        items = list(ml100k.items)
        ml100k = with_codes(ml100k, assign(items, np.random.default_rng(0).normal(size=(len(items), 8)), 2, 8))
    examples = build_examples(template, tokenizer, ml100k, ml100k_split, history_len=5, n=20, max_users=6,
                              prefixes_per_user=2, max_tokens=4096, seed=0, slots=slots)
    ranker = LLMRanker(template, None, tokenizer, ml100k, seed=7, max_length=4096, slots=slots)
    assert len(examples) >= 12
    for e in examples:
        seq = ml100k_split[e.user_id]
        history = e.item_ids[:len(e.item_ids) - len(e.shown)]
        end = next(t for t in range(len(seq.items)) if seq.items[max(0, t - 5):t] == history)
        target = seq.items[end]  # the training item this example was built for
        cands = list(e.shown)
        if template.style == "letters":  # lay the query out so that the ranker's own shuffle shows e.shown
            order = ranker.shuffled(UserQuery(e.user_id, [], cands))
            for j, k in enumerate(order):
                cands[k] = e.shown[j]
        built, order = ranker.scorables(UserQuery(e.user_id, _events(ml100k, seq, end, 5), cands))
        (s,) = built
        if not caps["choices"]:  # the candidate's own text (title, semantic ID)
            answer = s.answers[0]
        elif template.style == "letters":
            assert [cands[k] for k in order] == list(e.shown)
            answer = s.answers[e.shown.index(target)]
        else:
            answer = s.answers[0] if e.shown == (target,) else s.answers[1]  # Yes for the target, No otherwise
        assert e.input_ids == s.prompt.ids + answer, f"{name}: user {e.user_id}: training and ranking differ"
        assert e.labels[len(s.prompt.ids):] == answer
        # the choice loss's answer choices are the ranker's answer tokens, the right one marked
        if not caps["choices"]:
            assert e.choices == () and e.choice == -1
        else:
            assert e.choices == tuple(a[0] for a in s.answers) and e.choices[e.choice] == answer[0]
