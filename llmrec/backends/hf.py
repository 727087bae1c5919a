"""Transformers backend with shared-prefix scoring.

All continuations of a prompt are packed into one row after it: `prompt c1 c2 ... cK`. A 4D
attention mask lets each candidate token see the prompt and the earlier tokens of its own
candidate only, and position ids restart after the prompt for every candidate, so each candidate
is scored exactly as in its own `prompt + candidate` sequence while the prompt is computed once.
The LM head runs only at the positions whose next-token distribution is read.

Collaborative-vector slots (ids past the vocabulary, `llmrec/models/cf.py`) are read by the
model's hooked embedding layer; a slot inside a continuation gets a NaN log-probability (a vector
is not a token the model predicts; yes/no reads only the answer token after it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmrec.backends import HFSettings, ScoreRequest
from llmrec.models.cf import slots_of
from llmrec.models.generate import Generated, GenerateSettings, hf_generate
from llmrec.models.load import load_model, pick_device


class HFBackend:
    name = "hf"
    caches_prefixes = False  # shared prompts are packed by the caller (`ScoreRequest`), computed once here

    def __init__(self, model: str = "", *, adapter: str = "", device: str = "auto", dtype: str = "auto",
                 settings: HFSettings | None = None, model_obj=None) -> None:
        """Load `model` (+ `adapter`) with the one model loader, or score an already loaded
        `model_obj` (training's validation scores the model being trained)."""
        settings = settings or HFSettings()
        self.device = pick_device(device)
        self.shared_prefix = settings.shared_prefix
        self.batch_tokens = settings.batch_tokens
        if model_obj is None:
            model_obj = load_model(model, adapter, device=self.device, dtype=dtype)
        self.dtype = next(model_obj.parameters()).dtype
        self.model = model_obj.to(self.device).eval()
        self.slots = slots_of(self.model)  # collaborative vectors of a `| cf` template, if the model has them
        self.max_length = int(getattr(self._causal_lm().config, "max_position_embeddings", 2048)) - self._virtual_tokens()

    def generate(self, prompts: Sequence[list[int]], settings: GenerateSettings, tokenizer) -> list[Generated]:
        """Continuations by the loaded model itself (adapter and collaborative hooks included)."""
        return hf_generate(self.model, prompts, settings, tokenizer)

    # -- helpers -----------------------------------------------------------------------------
    def _causal_lm(self):
        m = self.model
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    def _virtual_tokens(self) -> int:
        """Number of soft-prompt tokens a prompt-tuning adapter puts before every sequence."""
        m = self.model
        if hasattr(m, "peft_config") and getattr(m.active_peft_config, "is_prompt_learning", False):
            return int(m.active_peft_config.num_virtual_tokens)
        return 0

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Hidden states of the base decoder for `ids` (no LM head).

        With a prompt-tuning adapter the virtual-token embeddings are prepended here, exactly once,
        and every real token sees them (as peft does): positions shift by their number, and the
        mask (2D padding mask or 4D packed mask) gains their columns.
        """
        decoder = self._causal_lm().get_decoder()
        v = self._virtual_tokens()
        if not v:
            return decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state
        b, t = ids.shape
        embeds = torch.cat([self.model.get_prompt(b).to(self.dtype),
                            self._causal_lm().get_input_embeddings()(ids)], dim=1)
        pos = torch.cat([torch.arange(v, device=ids.device).expand(b, v), pos + v], dim=1)
        if mask.dim() == 2:
            mask = torch.cat([torch.ones((b, v), dtype=mask.dtype, device=mask.device), mask], dim=1)
        else:  # (b, 1, t, t) additive mask: virtual rows causal among themselves, columns open to all
            lowest = torch.finfo(mask.dtype).min
            full = torch.full((b, 1, v + t, v + t), lowest, dtype=mask.dtype, device=mask.device)
            full[:, :, :v, :v] = torch.zeros(v, v, dtype=mask.dtype).masked_fill(
                ~torch.ones(v, v, dtype=torch.bool).tril(), lowest)
            full[:, :, v:, :v] = 0
            full[:, :, v:, v:] = mask
            mask = full
        out = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state
        return out[:, v:]

    def _logprobs_at(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self._causal_lm().get_output_embeddings()(hidden).float()
        return torch.log_softmax(logits, dim=-1)

    def _batches(self, sizes: list[int]) -> list[list[int]]:
        """Group request indices, longest first, so that rows x padded length <= batch_tokens."""
        order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
        batches: list[list[int]] = []
        for i in order:
            if batches and (len(batches[-1]) + 1) * sizes[batches[-1][0]] <= self.batch_tokens:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    # -- protocol ----------------------------------------------------------------------------
    @torch.inference_mode()
    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[np.ndarray]]:
        if not self.shared_prefix:  # naive reference path: every candidate recomputes its prompt
            flat = [ScoreRequest(r.prompt, [c]) for r in requests for c in r.continuations]
            out = iter(self._packed(flat))
            return [[next(out)[0] for _ in r.continuations] for r in requests]
        return self._packed(list(requests))

    def _packed(self, requests: list[ScoreRequest]) -> list[list[np.ndarray]]:
        sizes = [len(r.prompt) + sum(len(c) for c in r.continuations) for r in requests]
        results: list[list[np.ndarray]] = [[] for _ in requests]
        for batch in self._batches(sizes):
            width = max(sizes[i] for i in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            pos = torch.zeros((len(batch), width), dtype=torch.long)
            seg = torch.full((len(batch), width), -2, dtype=torch.long)  # -2 pad, -1 prompt, k cand
            reads: list[list[tuple[list[int], list[int]]]] = []  # per row, per cand: (positions, targets)
            for row, i in enumerate(batch):
                r = requests[i]
                p = len(r.prompt)
                ids[row, :p] = torch.tensor(r.prompt)
                pos[row, :p] = torch.arange(p)
                seg[row, :p] = -1
                at, row_reads = p, []
                for k, c in enumerate(r.continuations):
                    n = len(c)
                    ids[row, at:at + n] = torch.tensor(c)
                    pos[row, at:at + n] = torch.arange(p, p + n)
                    seg[row, at:at + n] = k
                    # token j of the candidate is predicted at the prompt's last position (j=0)
                    # or at the candidate's own previous token.
                    row_reads.append(([p - 1] + list(range(at, at + n - 1)), c))
                    at += n
                reads.append(row_reads)
            q = seg.unsqueeze(2)
            kv = seg.unsqueeze(1)
            causal = torch.ones(width, width, dtype=torch.bool).tril()
            allowed = causal & ((kv == -1) | (kv == q)) & (kv != -2)
            allowed |= torch.eye(width, dtype=torch.bool)  # pad rows attend to themselves: no NaN
            mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill(~allowed, torch.finfo(self.dtype).min)
            hidden = self._hidden(ids.to(self.device), mask.unsqueeze(1).to(self.device), pos.to(self.device))
            for row, i in enumerate(batch):
                positions = [p for rp, _ in reads[row] for p in rp]
                targets = [t for _, tg in reads[row] for t in tg]
                lp = self._logprobs_at(hidden[row, positions])
                tg = torch.tensor(targets, device=lp.device)
                # a collaborative-vector slot (id past the vocabulary) has no probability: NaN
                picked = lp[torch.arange(len(targets)), tg.clamp(max=lp.shape[-1] - 1)]
                picked = picked.masked_fill(tg >= lp.shape[-1], float("nan")).cpu().numpy().astype(np.float64)
                at = 0
                for _, tg in reads[row]:
                    results[i].append(picked[at:at + len(tg)])
                    at += len(tg)
        return results

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[list[int]], token_ids: Sequence[list[int]]) -> list[np.ndarray]:
        sizes = [len(p) for p in prompts]
        out: list[np.ndarray] = [np.empty(0)] * len(prompts)
        for batch in self._batches(sizes):
            width = max(sizes[i] for i in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # right padding: real tokens keep positions 0..n-1
                ids[row, :sizes[i]] = torch.tensor(prompts[i])
                mask[row, :sizes[i]] = 1
            pos = torch.arange(width).expand(len(batch), width)
            hidden = self._hidden(ids.to(self.device), mask.to(self.device), pos.to(self.device))
            last = hidden[torch.arange(len(batch)), torch.tensor([sizes[i] - 1 for i in batch])]
            lp = self._logprobs_at(last)
            for row, i in enumerate(batch):
                out[i] = lp[row, torch.tensor(token_ids[i])].cpu().numpy().astype(np.float64)
        return out

    def close(self) -> None:
        self.model = None
