"""Soft prompt-tuning (Lester et al., 2021): trainable virtual-token embeddings before the prompt."""

from __future__ import annotations


def prompt_tuning_config(settings, tokenizer_path: str = ""):
    """The peft `PromptTuningConfig` of `[train.prompt_tuning]`: initialised from `init_text`
    (tokenised with the model's tokenizer) or at random."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    if settings.init_text:
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=settings.num_virtual_tokens,
                                  prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=settings.init_text,
                                  tokenizer_name_or_path=tokenizer_path)
    return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=settings.num_virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.RANDOM)
