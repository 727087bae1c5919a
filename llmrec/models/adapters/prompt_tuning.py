"""Soft prompt-tuning (Lester et al., 2021): trainable virtual-token embeddings before the prompt."""

from __future__ import annotations

from llmrec.errors import ConfigError


def prompt_tuning_config(num_virtual_tokens: int = 20, prompt_init_text: str = "", tokenizer_path: str = ""):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    if num_virtual_tokens < 1:
        raise ConfigError(f"train.num_virtual_tokens: must be >= 1; got {num_virtual_tokens}")
    if prompt_init_text:
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens,
                                  prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=prompt_init_text,
                                  tokenizer_name_or_path=tokenizer_path)
    return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.RANDOM)
