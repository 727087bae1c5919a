"""Thin wrappers over peft configs: LoRA and soft prompt-tuning."""

from __future__ import annotations

from llmrec.errors import ConfigError


def make_peft_config(kind: str, **settings):
    if kind == "lora":
        from llmrec.models.adapters.lora import lora_config

        return lora_config(**settings)
    if kind == "prompt-tuning":
        from llmrec.models.adapters.prompt_tuning import prompt_tuning_config

        return prompt_tuning_config(**settings)
    raise ConfigError(f"train.adapter: expected lora or prompt-tuning; got {kind!r}")
