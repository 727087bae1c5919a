"""Thin wrappers over peft configs: LoRA and soft prompt-tuning."""

from __future__ import annotations

from pathlib import Path

from llmrec.assets import sha256_file
from llmrec.config import TrainConfig
from llmrec.errors import ConfigError


def make_peft_config(train: TrainConfig, tokenizer_path: str = ""):
    """The peft config of `train.adapter`, built from that adapter's own settings only.

    `TrainConfig` already refuses a changed setting of the other adapter kind, so nothing a user
    set is silently dropped here. `tokenizer_path` serves prompt-tuning's text initialisation.
    """
    if train.adapter == "lora":
        from llmrec.models.adapters.lora import lora_config

        return lora_config(lora_rank=train.lora_rank, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
                           lora_target_modules=train.lora_target_modules)
    if train.adapter == "prompt-tuning":
        from llmrec.models.adapters.prompt_tuning import prompt_tuning_config

        return prompt_tuning_config(num_virtual_tokens=train.num_virtual_tokens,
                                    prompt_init_text=train.prompt_init_text, tokenizer_path=tokenizer_path)
    raise ConfigError(f"train.adapter: expected lora or prompt-tuning; got {train.adapter!r}")


def adapter_sha256(adapter: str) -> str:
    """Digest of an adapter's weights (and collaborative-token projector): retraining into the same
    folder changes scores, so run.json records it and resumes compare it."""
    weights = sorted(Path(adapter).glob("adapter_model.*"))
    digest = sha256_file(weights[0]) if weights else ""
    projector = Path(adapter) / "cf_projector.safetensors"
    return digest + "+" + sha256_file(projector) if projector.is_file() else digest
