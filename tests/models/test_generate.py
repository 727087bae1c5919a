"""The one generator on the ranker's own backend: greedy is deterministic, sampling is seeded (and
leaves torch's global random state alone), no continuation runs past max_new_tokens, the stop string
ends the text, and chat templates are wrapped as ranking prompts are (system message kept)."""

import pytest
import torch

from llmrec.models.generate import Generator, Request
from llmrec.prompts.build import PromptBuilder
from llmrec.prompts.render import load_template

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prompts(hf_backend, tokenizer):
    g = Generator(hf_backend, tokenizer)
    t = load_template("chat/reason_v1", "chat-reason")
    return [g.prompt(t, request="a 90s comedy", wanted="Comedy", liked=[], item_noun="movie",
                     item={"title": title, "year": 1995, "genres": ["Comedy"]}) for title in ("Clueless", "Friday")]


def test_greedy_sampled_and_bounded(hf_backend, tokenizer, prompts):
    greedy = Generator(hf_backend, tokenizer, batch_size=1)
    a = greedy([Request(p, 8, None) for p in prompts])
    assert a == greedy([Request(p, 8, None) for p in prompts]) and all(g.tokens <= 8 for g in a)
    assert prompts[0].endswith("<|im_start|>assistant\nIt")  # the template's answer prefix
    sampled = Generator(hf_backend, tokenizer, sample=True, temperature=1.5, top_p=1.0)
    state = torch.random.get_rng_state()
    s1 = sampled([Request(p, 8, None, seed=1) for p in prompts])
    assert torch.equal(state, torch.random.get_rng_state())  # seeded without touching the global generator
    assert s1 == sampled([Request(p, 8, None, seed=1) for p in prompts])
    assert s1 != sampled([Request(p, 8, None, seed=2) for p in prompts])
    assert all(g.tokens <= 8 for g in s1)
    stopped = greedy([Request(prompts[0], 40, "\n")])[0]
    assert "\n" not in stopped.text and stopped.finished
    assert not greedy([Request(prompts[0], 2, None)])[0].finished  # cut by the token limit


def test_batched_equals_one_at_a_time(hf_backend, tokenizer, prompts):
    """Left padding in a batch does not change greedy text."""
    one = Generator(hf_backend, tokenizer, batch_size=1)([Request(p, 12, None) for p in prompts])
    both = Generator(hf_backend, tokenizer, batch_size=2)([Request(p, 12, None) for p in prompts])
    assert [g.text for g in one] == [g.text for g in both]


def test_chat_wrapping_keeps_the_system_message(tmp_path, tokenizer, hf_backend, ml100k):
    """Generated and scored prompts share one chat wrapping: a header `system:` reaches both."""
    path = tmp_path / "sys_v1.j2"
    path.write_text("{#\nstyle: kg-explain\nchat: true\nsystem: You are terse.\nanswer_prefix: Because\n#}\n"
                    "Why {{ item_noun }}?\n")
    t = load_template(str(path), "kg-explain")
    text = Generator(hf_backend, tokenizer).prompt(t, item_noun="movie")
    assert "You are terse." in text and text.endswith("Because") and "Why movie?" in text
    ranking = tmp_path / "rank_v1.j2"
    ranking.write_text("{#\nstyle: title\nchat: true\nsystem: You are terse.\n#}\nWhy {{ item_noun }}?\n")
    built = PromptBuilder(load_template(str(ranking)), tokenizer, 512, "movie").text()
    assert built == text.removesuffix("Because")
