"""The one text generator: templates in, bounded continuations out, on any scoring backend.

Chat (understanding, reasons), `kg-extract` and `explain --verbalize` all write text through
`Generator`, on the backend that ranks (`Backend.generate`: token ids in, token ids out), so the
text comes from the same weights, adapter and dtype as the scores, on transformers and vLLM alike.
Prompts are wrapped exactly as ranking prompts are (`llmrec.prompts.build.wrap_chat`: the header's
system message kept, `answer_prefix` appended); a plain template's text is followed by a newline so
the answer starts on a line of its own. Generation is greedy unless `sample` (temperature, top-p,
seeded per request without touching the global random state), never longer than `max_new_tokens`,
and cut at the request's `stop` string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from llmrec.errors import ConfigError
from llmrec.prompts.build import wrap_chat
from llmrec.prompts.render import Template


@dataclass(frozen=True)
class GenerateSettings:
    """How one batch of prompts is continued (requests with equal settings share calls)."""

    max_new_tokens: int
    stop: str | None = None  # the text is cut here; generation stops once every row has it
    seed: int = 0
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    grammar: str | None = None  # xgrammar EBNF every continuation must follow (`llmrec/chat/grammar.py`)


@dataclass(frozen=True)
class Generated:
    """New token ids of one prompt (an end-of-sequence token is dropped) and whether generation
    ended on its own (end-of-sequence or the stop string) rather than at `max_new_tokens`."""

    ids: list[int]
    finished: bool


class IdGenerator(Protocol):
    """What `Generator` needs of a backend (`llmrec.backends.Backend.generate`)."""

    def generate(self, prompts: Sequence[list[int]], settings: GenerateSettings, tokenizer: Any) -> list[Generated]:
        ...


@dataclass(frozen=True)
class Request:
    """One prompt to continue."""

    prompt: str
    max_new_tokens: int
    stop: str | None = "\n"
    seed: int = 0
    grammar: str | None = None  # EBNF the continuation is decoded under (GenerateSettings.grammar)


@dataclass(frozen=True)
class Generation:
    text: str
    finished: bool  # ended by end-of-sequence or `stop`, not by the token limit
    tokens: int


class Generator:
    """Text generation on a backend, with one tokenizer for prompts and answers."""

    def __init__(self, backend: IdGenerator, tokenizer, sample: bool = False, temperature: float = 0.7,
                 top_p: float = 0.9, batch_size: int = 16) -> None:
        self.backend, self.tokenizer = backend, tokenizer
        self.sample, self.temperature, self.top_p, self.batch_size = sample, temperature, top_p, batch_size

    def prompt(self, template: Template, **variables: Any) -> str:
        """A chat template's text as the user turn (system message and answer prefix from its header),
        or a plain template's text followed by a newline."""
        body = template.render(**variables)
        return wrap_chat(template, self.tokenizer, body) if template.chat else body + "\n"

    def __call__(self, requests: Sequence[Request], progress: str = "") -> list[Generation]:
        """Continuations in request order; requests with equal settings go to the backend together
        (`progress` names a tqdm bar over the requests; empty: none)."""
        from tqdm.auto import tqdm

        out: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for k, r in enumerate(requests):
            groups.setdefault((r.max_new_tokens, r.stop, r.seed, r.grammar), []).append(k)
        with tqdm(total=len(requests), desc=progress or "generate", unit="prompt", disable=not progress) as bar:
            for (max_new, stop, seed, grammar), ks in groups.items():
                settings = GenerateSettings(max_new, stop, seed, self.sample, self.temperature, self.top_p,
                                            self.batch_size, grammar)
                for start in range(0, len(ks), self.batch_size):  # a bar step per batch of the backend
                    part = ks[start:start + self.batch_size]
                    ids = [self.tokenizer(requests[k].prompt, add_special_tokens=False).input_ids for k in part]
                    for k, g in zip(part, self.backend.generate(ids, settings, self.tokenizer)):
                        out[k] = self._decode(g, stop)
                    bar.update(len(part))
        return out  # type: ignore[return-value]

    def _decode(self, g: Generated, stop: str | None) -> Generation:
        text = self.tokenizer.decode(g.ids, skip_special_tokens=True)
        finished = g.finished
        if stop and stop in text:
            text, finished = text[:text.index(stop)], True
        return Generation(text, finished, len(g.ids))


def hf_generate(model, prompts: Sequence[list[int]], settings: GenerateSettings, tokenizer) -> list[Generated]:
    """`model.generate` over token-id prompts: left-padded batches of similar lengths, order kept;
    a sampled call is seeded without changing torch's global random state."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    ends = {pad, tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {"stop_strings": [settings.stop], "tokenizer": tokenizer} if settings.stop else {}
    if settings.sample:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=None)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    vocab = model.get_output_embeddings().weight.shape[0]
    order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))  # similar lengths pad less
    out: list[Generated | None] = [None] * len(prompts)
    for start in range(0, len(order), settings.batch_size):
        batch = order[start:start + settings.batch_size]
        width = max(len(prompts[k]) for k in batch)
        rows = [[pad] * (width - len(prompts[k])) + list(prompts[k]) for k in batch]
        mask = [[0] * (width - len(prompts[k])) + [1] * len(prompts[k]) for k in batch]
        with torch.inference_mode(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(settings.seed)
            if settings.grammar:  # a processor serves one generate call
                kwargs["logits_processor"] = [grammar_processor(settings.grammar, tokenizer, vocab)]
            gen = model.generate(input_ids=torch.tensor(rows, device=device),
                                 attention_mask=torch.tensor(mask, device=device),
                                 max_new_tokens=settings.max_new_tokens, pad_token_id=pad, **kwargs)
        new = gen[:, width:].tolist()
        for k, row in zip(batch, new):
            end = next((n for n, t in enumerate(row) if t in ends), None)
            stopped = end is not None or len(row) < settings.max_new_tokens
            out[k] = Generated(row[:end] if end is not None else row, stopped)
    return out  # type: ignore[return-value]


@lru_cache(maxsize=4)
def _compiler(tokenizer, vocab_size: int):
    import xgrammar

    return xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size))


@lru_cache(maxsize=64)
def _compiled(grammar: str, tokenizer, vocab_size: int):
    try:
        return _compiler(tokenizer, vocab_size).compile_grammar(grammar)
    except RuntimeError as e:  # xgrammar reports a bad grammar as a RuntimeError naming the rule
        raise ConfigError(f"generation grammar does not compile: {str(e).splitlines()[0][:300]}") from None


def grammar_processor(grammar: str, tokenizer, vocab_size: int):
    """A transformers logits processor that masks every token the EBNF `grammar` does not allow
    next (xgrammar; end-of-sequence only once the grammar is complete)."""
    from xgrammar.contrib.hf import LogitsProcessor

    return LogitsProcessor(_compiled(grammar, tokenizer, vocab_size))
