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

import copy
from collections.abc import Sequence

import numpy as np
import torch

from llmrec.backends import HFSettings, ScoreRequest, tree
from llmrec.models.cf import slots_of
from llmrec.models.generate import Generated, GenerateSettings, hf_generate
from llmrec.models.load import load_model, pick_device

MAX_SESSION = 20_000  # tree nodes a session keeps (keys and values of ~46 KB each for SmolLM2-135M)


class TreeSession:
    """The keys and values of a prompt and of the tree nodes fed after it (one sequence), where each
    node's path sits in them and its last hidden state (where its children are read)."""

    def __init__(self, backend: HFBackend, key: tuple, prompt: list[int]) -> None:
        self.backend, self.key, self.prompt = backend, key, len(prompt)
        decoder = backend._causal_lm().get_decoder()
        out = decoder(input_ids=torch.tensor([prompt], device=backend.device),
                      position_ids=torch.arange(len(prompt), device=backend.device)[None], use_cache=True)
        self.cache = getattr(out, "cache", None) or out.past_key_values
        self.prompt_cache = copy.deepcopy(self.cache)  # the prompt's alone, for trees scored in rows
        self.end = out.last_hidden_state[0, -1]
        self.at: dict[tuple[int, ...], int] = {}  # path -> index among the fed nodes
        self.hidden: list[torch.Tensor] = []

    def feed(self, paths: list[tuple[int, ...]], depths: list[int]) -> None:
        """Append nodes (their parents already fed, or earlier in `paths`) to the cache."""
        b, p, before = self.backend, self.prompt, len(self.at)
        local = {path: before + i for i, path in enumerate(paths)}
        allowed = torch.zeros((len(paths), p + before + len(paths)), dtype=torch.bool)
        allowed[:, :p] = True
        for i, path in enumerate(paths):
            for n in range(1, len(path) + 1):
                allowed[i, p + (local.get(path[:n]) if path[:n] in local else self.at[path[:n]])] = True
        mask = torch.zeros(allowed.shape, dtype=b.dtype).masked_fill(~allowed, torch.finfo(b.dtype).min)
        out = b._causal_lm().get_decoder()(
            input_ids=torch.tensor([[path[-1] for path in paths]], device=b.device),
            position_ids=torch.tensor([[p + d for d in depths]], device=b.device),
            attention_mask=mask[None, None].to(b.device), use_cache=True, **{b._cache_arg(): self.cache})
        self.hidden.extend(out.last_hidden_state[0])
        self.at.update(local)


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
        self.tree_chunk = settings.tree_chunk
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
        logits = self._causal_lm().get_output_embeddings()(hidden)
        return torch.log_softmax(logits.double() if self.dtype == torch.float64 else logits.float(), dim=-1)

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
    def tree_logprobs(self, prompt: list[int], tokens: Sequence[int], parents: Sequence[int]) -> np.ndarray:
        """log P(tokens[k] | prompt, the tokens on k's path) for every node of a token tree given in
        preorder, each node computed once. A node's log-probability is read at its parent (the
        prompt's end for a first token), so only nodes with children go into the model: appended, up
        to `tree_chunk` at a time, to the keys and values of the prompt and of the nodes computed
        before (`TreeSession`), each attending to the prompt, its ancestors and itself at position
        `prompt length + depth`. The session is kept for the next call on the same prompt, so a beam
        search feeds each step only its new beams. A soft prompt (prompt-tuning) goes in front of
        rows of the whole path instead (`llmrec/backends/tree.py`)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        parents = np.asarray(parents, dtype=np.int64)
        if self._virtual_tokens():
            return self._tree_full_rows(list(prompt), tokens, tree.rows(parents, self.tree_chunk))
        session = self._session(list(prompt))
        if (parents >= 0).sum() > self.tree_chunk:  # a large tree (the whole catalogue): rows on the prompt's cache
            return self._tree_rows(session, tokens, tree.rows(parents, self.tree_chunk))
        paths: list[tuple[int, ...]] = []
        for k, p in enumerate(parents):
            paths.append((paths[p] if p >= 0 else ()) + (int(tokens[k]),))
        fed = [k for k in np.unique(parents[parents >= 0]) if paths[k] not in session.at]
        depth = tree.depths(parents)
        for start in range(0, len(fed), self.tree_chunk):
            session.feed([paths[k] for k in fed[start:start + self.tree_chunk]],
                         [int(depth[k]) for k in fed[start:start + self.tree_chunk]])
        where, inverse = np.unique(parents, return_inverse=True)  # one LM head row per parent
        states = [session.end if p < 0 else session.hidden[session.at[paths[p]]] for p in where]
        out = np.empty(len(tokens))
        for start in range(0, len(where), self.tree_chunk):  # the LM head in slices: chunk x vocabulary floats
            lp = self._logprobs_at(torch.stack(states[start:start + self.tree_chunk]))
            mine = np.flatnonzero((inverse >= start) & (inverse < start + self.tree_chunk))
            out[mine] = lp[torch.as_tensor(inverse[mine] - start), torch.as_tensor(tokens[mine])].cpu().numpy()
        return out

    def _tree_rows(self, session: TreeSession, tokens: np.ndarray, parts: list[tree.TreeRow]) -> np.ndarray:
        """A large tree in rows of at most `tree_chunk` fed nodes (each with its first node's
        ancestors), several rows per forward up to `batch_tokens`, all reading the prompt's keys and
        values computed once."""
        out = np.full(len(tokens), np.nan)
        p = session.prompt
        for batch in self._batches([p + len(r.nodes) for r in parts]):
            width = max(len(parts[i].nodes) for i in batch)
            hidden = None
            if width:
                ids = torch.zeros((len(batch), width), dtype=torch.long)
                pos = torch.full((len(batch), width), p, dtype=torch.long)
                allowed = torch.zeros((len(batch), width, p + width), dtype=torch.bool)
                allowed[:, torch.arange(width), p + torch.arange(width)] = True  # pad rows: themselves only
                for b, i in enumerate(batch):
                    r, m = parts[i], len(parts[i].nodes)
                    ids[b, :m] = torch.as_tensor(tokens[r.nodes])
                    pos[b, :m] = torch.as_tensor(p + r.depth)
                    allowed[b, :m, :p + m] = torch.as_tensor(tree.allowed(r.parents, p)[p:])
                mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill(~allowed, torch.finfo(self.dtype).min)
                past = copy.deepcopy(session.prompt_cache)
                past.batch_repeat_interleave(len(batch))
                hidden = self._causal_lm().get_decoder()(
                    input_ids=ids.to(self.device), attention_mask=mask.unsqueeze(1).to(self.device),
                    position_ids=pos.to(self.device), use_cache=True, **{self._cache_arg(): past}).last_hidden_state
            for b, i in enumerate(batch):
                self._read(parts[i], tokens, session.end, None if hidden is None else hidden[b], out)
        return out

    def _session(self, prompt: list[int]) -> TreeSession:
        """The tree session of this prompt (and collaborative stage): kept while the same prompt comes
        back and the session stays under `MAX_SESSION` tokens, else a new one."""
        key = (tuple(prompt), None if self.slots is None else self.slots.stage)  # a slot's vector depends on the stage
        old = getattr(self, "_tree", None)
        if old is None or old.key != key or len(old.at) > MAX_SESSION:
            self._tree = TreeSession(self, key, prompt)
        return self._tree

    def _cache_arg(self) -> str:
        """The decoder's keyword for a key/value cache (`cache` from transformers 5.2x, `past_key_values` before)."""
        import inspect

        return "cache" if "cache" in inspect.signature(self._causal_lm().get_decoder().forward).parameters \
            else "past_key_values"

    def _read(self, r: tree.TreeRow, tokens: np.ndarray, end: torch.Tensor, hidden: torch.Tensor | None,
              out: np.ndarray) -> None:
        """The log-probabilities a row gives: each read node at its parent's place (or the prompt's end)."""
        if not len(r.reads):
            return
        where, inverse = np.unique(r.read_at, return_inverse=True)
        states = torch.stack([end if w < 0 else hidden[w] for w in where])
        lp = self._logprobs_at(states)
        out[r.reads] = lp[torch.as_tensor(inverse), torch.as_tensor(tokens[r.reads])].cpu().numpy().astype(np.float64)

    def _tree_full_rows(self, prompt: list[int], tokens: np.ndarray, parts: list[tree.TreeRow]) -> np.ndarray:
        """`tree_logprobs` with the prompt in every row (a soft prompt goes in front of each)."""
        out = np.full(len(tokens), np.nan)
        p = len(prompt)
        for batch in self._batches([p + len(r.nodes) for r in parts]):
            width = max(p + len(parts[i].nodes) for i in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            pos = torch.zeros((len(batch), width), dtype=torch.long)
            allowed = torch.eye(width, dtype=torch.bool).repeat(len(batch), 1, 1)  # pad rows: themselves only
            for b, i in enumerate(batch):
                r, n = parts[i], p + len(parts[i].nodes)
                ids[b, :n] = torch.tensor(prompt + tokens[r.nodes].tolist())
                pos[b, :n] = torch.cat([torch.arange(p), torch.as_tensor(p + r.depth)])
                allowed[b, :n, :n] = torch.as_tensor(tree.allowed(r.parents, p))
            mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill(~allowed, torch.finfo(self.dtype).min)
            hidden = self._hidden(ids.to(self.device), mask.unsqueeze(1).to(self.device), pos.to(self.device))
            for b, i in enumerate(batch):
                self._read(parts[i], tokens, hidden[b, p - 1], hidden[b, p:], out)
        return out

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
