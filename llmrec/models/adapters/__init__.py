"""Thin wrappers over peft configs: LoRA and soft prompt-tuning."""

from __future__ import annotations

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
