"""LoRA (Hu et al., 2021) on the attention and MLP projections.

`lm_head` is never a default target: vLLM serves LoRA adapters only on linear layers inside the
blocks, and prompt log-probabilities crash there when the head is adapted.
"""

from __future__ import annotations

from llmrec.errors import ConfigError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_config(lora_rank: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.05,
                lora_target_modules: tuple[str, ...] = DEFAULT_TARGETS):
    from peft import LoraConfig, TaskType

    if "lm_head" in lora_target_modules:
        raise ConfigError("train.lora_target_modules: lm_head cannot be a LoRA target (vLLM cannot serve "
                          "prompt log-probabilities with an adapted head); remove it")
    if lora_rank < 1:
        raise ConfigError(f"train.lora_rank: must be >= 1; got {lora_rank}")
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora_rank, lora_alpha=lora_alpha,
                      lora_dropout=lora_dropout, target_modules=list(lora_target_modules))
