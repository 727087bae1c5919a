"""Backend protocol and registry.

Backends see token ids only: tokenisation, templates and budgets live in the scoring layer, so
the transformers and vLLM backends are guaranteed to score the very same sequences.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from llmrec.config import BACKEND_NAMES, Config
from llmrec.errors import ConfigError


@dataclass(frozen=True)
class ScoreRequest:
    """One prompt and the continuations to score after it (they share the prompt's computation)."""

    prompt: list[int]
    continuations: list[list[int]]


class Backend(Protocol):
    name: str
    max_length: int  # the model's context length in tokens

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[np.ndarray]]:
        """Per request, per continuation: log P(token_j | prompt, tokens_<j) for each token, in order."""
        ...

    def next_token_logprobs(self, prompts: Sequence[list[int]], token_ids: Sequence[list[int]]) -> list[np.ndarray]:
        """Per prompt: log P(t | prompt) for each t in its `token_ids` (letters, Yes/No)."""
        ...

    def close(self) -> None: ...


BACKENDS = {"hf": "llmrec.backends.hf:HFBackend", "vllm": "llmrec.backends.vllm:VLLMBackend"}
assert tuple(BACKENDS) == BACKEND_NAMES, "config.BACKEND_NAMES lists the registry's names"


def make_backend(name: str, model: str, **options: Any) -> Backend:
    """Build a backend by short name; heavy imports happen only here."""
    if name not in BACKENDS:
        raise ConfigError(f"rank.backend: unknown backend {name!r}; known: {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(model, **options)


def backend_from_config(cfg: Config) -> Backend:
    """The backend `[rank]`, `[model]` and `[vllm]` describe: the one the batch job and the server share."""
    options: dict[str, Any] = {"device": cfg.model.device, "dtype": cfg.model.dtype, "adapter": cfg.model.adapter}
    if cfg.rank.backend == "hf":
        options.update(shared_prefix=cfg.rank.shared_prefix, batch_tokens=cfg.rank.batch_tokens)
    elif cfg.rank.backend == "vllm":
        options.update(settings=cfg.vllm)
    try:
        return make_backend(cfg.rank.backend, cfg.model.name, **options)
    except (OSError, ValueError) as e:  # transformers' "not a model folder / not a Hub id"
        raise ConfigError(f"model.name {cfg.model.name!r}: cannot load ({str(e).splitlines()[0]})") from None
