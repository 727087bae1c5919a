"""Adapters on the real SmolLM2: shared-prefix scores equal the peft model's own forward, and a
saved adapter loaded by `rank --adapter`'s backend scores exactly like the in-memory one."""

import numpy as np
import pytest
import torch

from llmrec.backends import ScoreRequest
from llmrec.errors import ConfigError
from llmrec.models.adapters import LoraSettings, PromptTuningSettings, make_peft_config
from tests.conftest import train_cfg

pytestmark = pytest.mark.slow
TOL = 3e-4  # fp32 summation order (packed vs plain); a random, non-small LoRA B roughly doubles it


@pytest.fixture(scope="module", params=["lora", "prompt-tuning"])
def adapted(request):
    """A peft model whose adapter is not the identity (LoRA B and soft prompt both random)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.load import resolve_model

    path = resolve_model("smollm2-135m-instruct")
    torch.manual_seed(0)
    own = {"lora": "train.lora.rank=4", "prompt-tuning": "train.prompt_tuning.num_virtual_tokens=5"}[request.param]
    cfg = make_peft_config(train_cfg(f"train.adapter={request.param}", own))
    if request.param == "lora":
        cfg.init_lora_weights = False  # random B: the adapter changes the scores
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), cfg).eval()
    return request.param, model


def reference(model, ids):
    """Log-probs of every next token from the peft model's own forward (virtual tokens included)."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits[-len(ids):].float(), -1)  # prompt-tuning logits start with its tokens


def requests(tokenizer):
    prompt = tokenizer("A user watched Heat, Casino and Fargo. The next movie is:").input_ids
    titles = ["GoldenEye", "Star Wars", "Misérables, Les"]
    return [ScoreRequest(prompt, [tokenizer(" " + t, add_special_tokens=False).input_ids for t in titles]),
            ScoreRequest(prompt[:6], [tokenizer(" Heat", add_special_tokens=False).input_ids])]


def test_shared_prefix_equals_peft_forward(adapted, tokenizer, hf_backend):
    from llmrec.backends.hf import HFBackend

    kind, model = adapted
    backend = HFBackend(model_obj=model, device="cpu")
    assert backend._virtual_tokens() == (5 if kind == "prompt-tuning" else 0)
    reqs = requests(tokenizer)
    got = backend.continuation_logprobs(reqs)
    base = hf_backend.continuation_logprobs(reqs)
    for req, lps, base_lps in zip(reqs, got, base):
        for cont, lp, b in zip(req.continuations, lps, base_lps):
            ref = reference(model, req.prompt + cont)
            want = [ref[len(req.prompt) - 1 + j, t].item() for j, t in enumerate(cont)]
            np.testing.assert_allclose(lp, want, atol=TOL)
            assert np.abs(lp - b).max() > 1e-3  # the adapter is really applied
    # Next-token scores (letters, yes/no styles) through the same path.
    prompt = reqs[0].prompt
    nxt = backend.next_token_logprobs([prompt, prompt[:6]], [[49, 50], [9230]])
    np.testing.assert_allclose(nxt[0], reference(model, prompt)[-1, [49, 50]].numpy(), atol=TOL)
    np.testing.assert_allclose(nxt[1], reference(model, prompt[:6])[-1, [9230]].numpy(), atol=TOL)


def test_saved_adapter_scores_equal(adapted, tokenizer, tmp_path):
    from llmrec.backends.hf import HFBackend

    _, model = adapted
    model.save_pretrained(tmp_path / "adapter")
    reqs = requests(tokenizer)
    mem = HFBackend(model_obj=model, device="cpu").continuation_logprobs(reqs)
    disk = HFBackend("smollm2-135m-instruct", device="cpu", adapter=str(tmp_path / "adapter"))
    for a, b in zip(mem, disk.continuation_logprobs(reqs)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-6)


def test_adapter_settings_are_checked():
    with pytest.raises(ConfigError, match="lm_head"):
        LoraSettings(target_modules=("q_proj", "lm_head"))
    with pytest.raises(ConfigError, match="num_virtual_tokens"):
        PromptTuningSettings(num_virtual_tokens=0)
    with pytest.raises(ConfigError, match="train.adapter: unknown adapter kind 'ia3'; known: lora, prompt-tuning"):
        train_cfg("train.adapter=ia3")


def test_each_adapter_gets_only_its_own_settings():
    lora = make_peft_config(train_cfg("train.lora.rank=16", "train.lora.alpha=32", "train.lora.dropout=0.1",
                                      "train.lora.target_modules=['q_proj', 'v_proj']"))
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, sorted(lora.target_modules)) == (16, 32, 0.1,
                                                                                         ["q_proj", "v_proj"])
    soft = make_peft_config(train_cfg("train.adapter=prompt-tuning", "train.prompt_tuning.num_virtual_tokens=7",
                                      "train.prompt_tuning.init_text='Pick one.'"), tokenizer_path="some/tokenizer")
    assert (soft.num_virtual_tokens, soft.prompt_tuning_init_text, soft.tokenizer_name_or_path) == (
        7, "Pick one.", "some/tokenizer")
    # The other kind's table is not used: prompt-tuning builds from its own table only.
    soft = make_peft_config(train_cfg("train.adapter=prompt-tuning", "train.lora.rank=16"))
    assert soft.num_virtual_tokens == 20 and not hasattr(soft, "r")
