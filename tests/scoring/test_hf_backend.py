"""Shared-prefix scoring on the real SmolLM2 equals the naive one-sequence-per-candidate computation."""

import numpy as np
import pytest
import torch

from llmrec.backends import ScoreRequest
from llmrec.prompts.build import BuiltPrompt, PromptBuilder
from llmrec.prompts.render import load_template

pytestmark = pytest.mark.slow
TOL = 1e-4  # fp32; packed and unpacked attention sum in different orders (observed max ~2e-5)


def naive(model, prompt, cont):
    """Reference: run prompt+continuation as one ordinary sequence, no custom mask."""
    with torch.inference_mode():
        lp = torch.log_softmax(model(torch.tensor([prompt + cont])).logits[0].float(), -1)
    return np.array([lp[len(prompt) - 1 + j, t].item() for j, t in enumerate(cont)])


def test_shared_prefix_equals_naive(hf_backend, tokenizer):
    titles = ["GoldenEye", "Star Wars", "Misérables, Les", "Star Wars", "Things to Do in Denver when You're Dead"]
    p1 = tokenizer("Here are the movies a user watched:\n- Heat\n- Casino\nThe next movie is:").input_ids
    p2 = p1[:7]
    reqs = [ScoreRequest(p1, [tokenizer(" " + t, add_special_tokens=False).input_ids for t in titles]),
            ScoreRequest(p2, [tokenizer(" " + t, add_special_tokens=False).input_ids for t in titles[:2]])]
    for batch_tokens in (4096, 1):  # several requests per forward (padded) and one at a time
        hf_backend.batch_tokens = batch_tokens
        packed = hf_backend.continuation_logprobs(reqs)
        for req, got in zip(reqs, packed):
            for cont, lp in zip(req.continuations, got):
                assert lp.shape == (len(cont),)
                np.testing.assert_allclose(lp, naive(hf_backend.model, req.prompt, cont), atol=TOL)
    hf_backend.batch_tokens = 4096
    # Identical candidate texts get identical scores; non-ASCII titles score finitely.
    np.testing.assert_allclose(packed[0][1], packed[0][3], atol=1e-5)
    assert np.isfinite(packed[0][2]).all()
    hf_backend.shared_prefix = False
    try:
        flat = hf_backend.continuation_logprobs(reqs)
    finally:
        hf_backend.shared_prefix = True
    for a, b in zip(packed, flat):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=TOL)


def test_next_token_logprobs_equal_plain_forward(hf_backend, tokenizer):
    prompts = [tokenizer("Answer: (").input_ids, tokenizer("Will the user like it? Answer:").input_ids]
    got = hf_backend.next_token_logprobs(prompts, [[49, 50, 51], [9230, 2838]])
    for p, ids, lp in zip(prompts, [[49, 50, 51], [9230, 2838]], got):
        with torch.inference_mode():
            ref = torch.log_softmax(hf_backend.model(torch.tensor([p])).logits[0, -1].float(), -1)[ids]
        np.testing.assert_allclose(lp, ref.numpy(), atol=TOL)


def test_continuation_tokenisation_edges(tokenizer):
    plain = PromptBuilder(load_template("title/next_item_v1"), tokenizer, 8192, "movie")
    prompt = BuiltPrompt("The next movie is:", plain.encode("The next movie is:"), 0)
    # A leading space is added after ':' and the ids are those of the joint tokenisation.
    assert plain.answer_ids(prompt, "Toy Story") == tokenizer(" Toy Story", add_special_tokens=False).input_ids
    assert tokenizer.decode(plain.answer_ids(prompt, "Misérables, Les")) == " Misérables, Les"
    chat = PromptBuilder(load_template("title/next_item_chat_v1"), tokenizer, 8192, "movie")
    text = chat.text(history=[{"title": "Heat"}], user={})
    assert text.endswith("<|im_start|>assistant\n")
    cp = BuiltPrompt(text, chat.encode(text), 0)
    assert cp.ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")  # no BOS added to chat text
    assert chat.answer_ids(cp, "Toy Story") == tokenizer("Toy Story", add_special_tokens=False).input_ids
