"""Adapter kinds: thin wrappers over peft configs, one registry entry each.

An entry registers the function that turns its settings (the `[train.<section>]` table) into a peft
config, `fn(settings, tokenizer_path) -> peft.PeftConfig`:

    ADAPTERS.register("lora", "llmrec.models.adapters.lora:lora_config", settings=LoraSettings)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmrec.assets import sha256_file
from llmrec.errors import ConfigError
from llmrec.registry import ADAPTERS

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """`[train.lora]`: LoRA (Hu et al., 2021) on the attention and MLP projections."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        if self.rank < 1 or not self.alpha > 0:
            raise ConfigError(f"train.lora.rank must be >= 1 and train.lora.alpha > 0; got {self.rank}, {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"train.lora.dropout: must be in [0, 1); got {self.dropout}")
        if "lm_head" in self.target_modules:
            raise ConfigError("train.lora.target_modules: lm_head cannot be a LoRA target (vLLM cannot serve "
                              "prompt log-probabilities with an adapted head); remove it")


@dataclass(frozen=True)
class PromptTuningSettings:
    """`[train.prompt_tuning]`: soft prompt-tuning (Lester et al., 2021)."""

    num_virtual_tokens: int = 20
    init_text: str = ""  # empty: random init

    def __post_init__(self) -> None:
        if self.num_virtual_tokens < 1:
            raise ConfigError(f"train.prompt_tuning.num_virtual_tokens: must be >= 1; got {self.num_virtual_tokens}")


ADAPTERS.register("lora", "llmrec.models.adapters.lora:lora_config", settings=LoraSettings, virtual_tokens=False,
                  trainable_tokens=True)
ADAPTERS.register("prompt-tuning", "llmrec.models.adapters.prompt_tuning:prompt_tuning_config",
                  settings=PromptTuningSettings, section="prompt_tuning", virtual_tokens=True, trainable_tokens=False)


def make_peft_config(train, tokenizer_path: str = "", trainable_tokens: list[int] | None = None):
    """The peft config of `train.adapter` (a `TrainConfig`), built from that kind's own settings;
    `tokenizer_path` serves prompt-tuning's text initialisation; `trainable_tokens`: token ids whose
    embedding rows the adapter trains too (added tokens: semantic-ID codes)."""
    config = ADAPTERS.get(train.adapter)(train.adapter_settings, tokenizer_path)
    if trainable_tokens:
        if not ADAPTERS.entry(train.adapter).capabilities.get("trainable_tokens"):
            raise ConfigError(f"train.sid trains new token rows, which train.adapter={train.adapter} cannot; use lora")
        config.trainable_token_indices = {"embed_tokens": list(trainable_tokens)}
    return config


def virtual_tokens(train) -> int:
    """Soft-prompt tokens the adapter of `train` puts before every sequence (0 for LoRA)."""
    if ADAPTERS.entry(train.adapter).capabilities.get("virtual_tokens"):
        return train.adapter_settings.num_virtual_tokens
    return 0


def adapter_sha256(adapter: str) -> str:
    """Digest of an adapter's weights (and collaborative-token projector): retraining into the same
    folder changes scores, so run.json records it and resumes compare it."""
    weights = sorted(Path(adapter).glob("adapter_model.*"))
    digest = sha256_file(weights[0]) if weights else ""
    projector = Path(adapter) / "cf_projector.safetensors"
    return digest + "+" + sha256_file(projector) if projector.is_file() else digest
