"""Bounded generation for the chat loop: the understanding answer and the reply's reasons.

The ranking backend's own model writes the text (the transformers backend's `model`; with
another backend the configured model is loaded once for generation), greedy by default or
sampled (`chat.sample`, `chat.temperature`, `chat.top_p`, seeded per call), never more than
`max_new_tokens` tokens, stopping at `stop`. Prompts of one call are batched with left padding.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmrec.prompts.render import Template


@dataclass(frozen=True)
class Request:
    """One prompt to continue (hashable settings, so a batch groups equal ones)."""

    prompt: str
    max_new_tokens: int
    stop: str | None = "\n"
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    finished: bool  # ended by end-of-sequence or `stop`, not by the token limit
    tokens: int


class Generator:
    def __init__(self, model, tokenizer, sample: bool = False, temperature: float = 0.7, top_p: float = 0.9,
                 batch_size: int = 16) -> None:
        import torch

        self.model, self.tokenizer, self.torch = model, tokenizer, torch
        self.sample, self.temperature, self.top_p, self.batch_size = sample, temperature, top_p, batch_size
        self.device = next(model.parameters()).device
        self.lock = threading.Lock()  # the global torch RNG is seeded per sampled call
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad = pad
        eos = model.generation_config.eos_token_id
        self.eos = {pad, tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    def prompt(self, template: Template, **variables: Any) -> str:
        """A chat template's text as the user turn (plus the header's `answer_prefix`), or a plain
        template's text followed by a newline."""
        body = template.render(**variables)
        if not template.chat:
            return body + "\n"
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": body}], add_generation_prompt=True,
                                                  tokenize=False)
        return text + template.header.get("answer_prefix", "")

    def __call__(self, requests: Sequence[Request]) -> list[Generation]:
        """Continuations in request order; requests with equal settings share `generate` calls of up
        to `batch_size` prompts."""
        out: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for k, r in enumerate(requests):
            groups.setdefault((r.max_new_tokens, r.stop, r.seed), []).append(k)
        for (max_new, stop, seed), ks in groups.items():
            ks = sorted(ks, key=lambda k: len(requests[k].prompt))  # similar lengths pad less
            for start in range(0, len(ks), self.batch_size):
                part = ks[start:start + self.batch_size]
                for k, g in zip(part, self._generate([requests[k].prompt for k in part], max_new, stop, seed)):
                    out[k] = g
        return out  # type: ignore[return-value]

    def _generate(self, prompts: list[str], max_new_tokens: int, stop: str | None, seed: int) -> list[Generation]:
        tok, torch = self.tokenizer, self.torch
        ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
        width = max(len(x) for x in ids)
        rows = [[self.pad] * (width - len(x)) + x for x in ids]
        mask = [[0] * (width - len(x)) + [1] * len(x) for x in ids]
        kwargs: dict[str, Any] = {"stop_strings": [stop], "tokenizer": tok} if stop else {}
        if self.sample:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=None)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self.lock, torch.inference_mode():
            if self.sample:
                torch.manual_seed(seed)
            gen = self.model.generate(input_ids=torch.tensor(rows, device=self.device),
                                      attention_mask=torch.tensor(mask, device=self.device),
                                      max_new_tokens=max_new_tokens, pad_token_id=self.pad, **kwargs)
        out = []
        for row in gen[:, width:].tolist():
            end = next((n + 1 for n, t in enumerate(row) if t in self.eos), len(row))
            row = row[:end]
            text = tok.decode(row, skip_special_tokens=True)
            finished = end < len(gen[0]) - width or (bool(row) and row[-1] in self.eos) or bool(stop and stop in text)
            if stop and stop in text:
                text = text[:text.index(stop)]
            out.append(Generation(text, finished, len(row)))
        return out
