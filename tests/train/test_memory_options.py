"""Memory options that this CPU cannot run are refused in one line, before any model loads."""

import importlib.util

import pytest
import torch

from llmrec.config import load_config
from llmrec.errors import ConfigError
from llmrec.models.load import quantization_config
from llmrec.train.finetune import precision


def test_quantization_needs_a_cuda_gpu_then_bitsandbytes(monkeypatch):
    assert quantization_config("none") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^train.quantization=4bit loads the base weights through bitsandbytes, "
                                          r"whose kernels need an NVIDIA GPU \(CUDA\); this machine has none"):
        quantization_config("4bit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^train.quantization=8bit needs bitsandbytes: pip install bitsandbytes"):
        quantization_config("8bit")


def test_mixed_precision_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (precision("auto"), precision("bf16"), precision("no")) == ("no", "bf16", "no")
    with pytest.raises(ConfigError, match=r"^train.mixed_precision=fp16 needs a CUDA GPU"):
        precision("fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (precision("auto"), precision("fp16")) == ("bf16", "fp16")
    with pytest.raises(ConfigError, match=r"train.mixed_precision: expected one of auto, bf16, fp16, no; got 'fp8'"):
        load_config(None, ["train.mixed_precision=fp8"])


def test_quantization_is_lora_only_and_refused_by_train_before_loading(prepared, monkeypatch):
    from llmrec.recipes import train

    with pytest.raises(ConfigError, match=r"train.quantization=4bit trains LoRA on frozen quantised weights \(QLoRA\); "
                                          r"train.adapter='prompt-tuning' is not supported"):
        load_config(None, ["train.quantization=4bit", "train.adapter=prompt-tuning"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = []
    monkeypatch.setattr("llmrec.models.load.load_model", lambda *a, **k: loaded.append(a))
    cfg = load_config(None, [f"out_dir={prepared.out_dir}", "train.quantization=4bit",
                             "train.template=title/next_item_v1"])
    with pytest.raises(ConfigError, match=r"^train.quantization=4bit loads the base weights through bitsandbytes"):
        train.run(cfg, log=lambda *_: None)
    assert not loaded


@pytest.mark.parametrize("name,kind,stage", [("deepspeed_zero2", "DEEPSPEED", 2), ("deepspeed_zero3", "DEEPSPEED", 3),
                                             ("fsdp", "FSDP", None)])
def test_shipped_accelerate_configs_parse(name, kind, stage):
    from accelerate.commands.config.config_args import ClusterConfig

    c = ClusterConfig.from_yaml_file(f"scripts/configs/accelerate/{name}.yaml")
    assert c.distributed_type.name == kind and c.mixed_precision == "bf16" and c.num_processes == 8
    if stage is not None:
        assert c.deepspeed_config["zero_stage"] == stage
    else:
        assert c.fsdp_config["fsdp_use_orig_params"] is True  # LoRA: trainable and frozen weights in one unit


def test_packed_batches_are_refused_where_a_row_must_hold_one_example():
    with pytest.raises(ConfigError, match=r"train.batches=packed needs the token loss; train.cf.residual's choice loss"):
        load_config(None, ["train.batches=packed", "train.cf.vectors=runs/x", "train.cf.residual=true"])
    with pytest.raises(ConfigError, match=r"train.batches=packed: rows of several examples .*train.adapter='prompt-tuning'"):
        load_config(None, ["train.batches=packed", "train.adapter=prompt-tuning"])
    assert load_config(None, ["train.batches=packed"]).train.batches == "packed"
