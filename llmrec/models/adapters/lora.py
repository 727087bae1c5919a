"""LoRA (Hu et al., 2021) on the attention and MLP projections.

`lm_head` is never a target (`LoraSettings` refuses it): vLLM serves LoRA adapters only on linear
layers inside the blocks, and prompt log-probabilities crash there when the head is adapted.
"""

from __future__ import annotations


def lora_config(settings, tokenizer_path: str = ""):
    """The peft `LoraConfig` of `[train.lora]` (a `LoraSettings`)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=settings.rank, lora_alpha=settings.alpha,
                      lora_dropout=settings.dropout, target_modules=list(settings.target_modules))
