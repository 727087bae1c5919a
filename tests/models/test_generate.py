"""Bounded generation on the ranker's own model: greedy is deterministic, sampling is seeded, and
no continuation runs past max_new_tokens."""

import pytest

from llmrec.chat.engine import load_chat_template
from llmrec.chat.generate import Generator, Request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prompts(hf_backend, tokenizer):
    g = Generator(hf_backend.model, tokenizer)
    t = load_chat_template("chat/reason_v1", "chat-reason")
    return [g.prompt(t, request="a 90s comedy", wanted="Comedy", liked=[], item_noun="movie",
                     item={"title": title, "year": 1995, "genres": ["Comedy"]}) for title in ("Clueless", "Friday")]


def test_greedy_sampled_and_bounded(hf_backend, tokenizer, prompts):
    greedy = Generator(hf_backend.model, tokenizer, batch_size=1)
    a = greedy([Request(p, 8, None) for p in prompts])
    assert a == greedy([Request(p, 8, None) for p in prompts]) and all(g.tokens <= 8 for g in a)
    assert prompts[0].endswith("<|im_start|>assistant\nIt")  # the template's answer prefix
    sampled = Generator(hf_backend.model, tokenizer, sample=True, temperature=1.5, top_p=1.0)
    s1 = sampled([Request(p, 8, None, seed=1) for p in prompts])
    assert s1 == sampled([Request(p, 8, None, seed=1) for p in prompts])
    assert all(g.tokens <= 8 for g in s1)
    stopped = greedy([Request(prompts[0], 40, "\n")])[0]
    assert "\n" not in stopped.text
