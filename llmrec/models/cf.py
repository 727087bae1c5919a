"""Collaborative tokens: a baseline's user and item vectors inside the LM's input (CoLLM, LLaRA).

A template marks slots with `| cf` (`llmrec/prompts/slots.py`); each slot is a token id past the
vocabulary. `SlotTable` maps those ids to the vectors of a trained llmrec baseline run
(`vectors.npz`: BPR-MF, ALS or SASRec) and, through a small MLP per kind (`Projector`), into the
LM's hidden size. `attach` hooks the model's input-embedding layer so that slot ids read their
projected vector and every other id its usual row; nothing else in the model, the prompt path or
the backends changes, so shared-prefix scoring, prompt-tuning and training work unchanged.

Inputs: an item is `[q_i, b_i]`, a user `[p_u, 1]` (their dot product is the baseline's score),
each kind scaled to unit RMS. Users use the vectors that score the target's stage (SASRec's
validation-stage vectors have not read the validation item). An item or user the vectors do not
know gets a learned "unknown" input of its kind; training replaces a share of slots
(`unknown_rate`) by it so that fallback is trained, not random.

With `residual`, the baseline's own score also enters as an offset: a candidate's final score is
the LM's answer score plus `alpha * z(u, i)`, z the dot product of the scaled user and item
inputs (the baseline's score up to a constant factor) and alpha learned, initialised so that the
offset dominates: ranking starts at the baseline's level and the LM learns what to add. The
training loss is then the softmax over the answer choices (letters, Yes/No) with the offsets.

The adapter folder keeps `cf_projector.safetensors` and `cf.json` (the vectors file's path and
sha256, sizes, placeholder token); loading refuses vectors whose sha256 differs, since a refitted
baseline has another geometry than the one the projector learned.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmrec.assets import sha256_file
from llmrec.baselines.vectors import FILENAME, Vectors
from llmrec.errors import ConfigError

CONFIG = "cf.json"
WEIGHTS = "cf_projector.safetensors"
RESIDUAL_INIT = 10.0  # initial alpha times the spread of z: the offset starts out dominating the LM's scores


def vectors_path(source: str) -> Path:
    """A baseline run directory or a `vectors.npz` path -> the file."""
    p = Path(source)
    return p / FILENAME if p.is_dir() else p


def placeholder_token(tokenizer) -> tuple[str, int]:
    """An existing special token that text never produces, written where a vector goes.

    The last added special token that is neither a bos/eos/pad/unk token nor used by the chat
    template (SmolLM2: `<empty_output>`); no vocabulary resize is needed, and the id never reaches
    the model (it is swapped for a slot id before the forward pass).
    """
    special = set(tokenizer.all_special_tokens)
    chat = str(getattr(tokenizer, "chat_template", "") or "")
    for tid, tok in sorted(tokenizer.added_tokens_decoder.items(), reverse=True):
        if tok.special and tok.content not in special and tok.content not in chat:
            return tok.content, int(tid)
    raise ConfigError("collaborative tokens need a spare special token in the tokenizer (an added special token "
                      "that is not bos/eos/pad and not in the chat template); this tokenizer has none")


class Projector(nn.Module):
    """One MLP per kind (user, item) into the LM's hidden size, plus a learned unknown input per kind."""

    def __init__(self, d_in: int, hidden: int, d_out: int, alpha: float | None = None) -> None:
        super().__init__()
        self.user = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
        self.item = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
        self.unknown = nn.Parameter(torch.zeros(2, d_in))  # row 0 user, row 1 item
        if alpha is not None:  # the residual's weight (see module doc)
            self.alpha = nn.Parameter(torch.tensor(float(alpha)))


def _rms_scaled(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x)))) or 1.0
    return (x / rms).astype(np.float32)


class SlotTable(nn.Module):
    """Slot ids -> projected vectors. Id layout past the vocabulary size V:
    V unknown user, V+1 unknown item, then one id per user, then one per item."""

    def __init__(self, vectors: Vectors, vocab_size: int, hidden_size: int, placeholder: tuple[str, int],
                 proj_hidden: int = 0, unknown_rate: float = 0.0, source: str = "", source_sha256: str = "",
                 residual: bool = False) -> None:
        super().__init__()
        if not vectors.exact:
            raise ConfigError(f"train.cf.vectors: {vectors.model} vectors do not score by a dot product; use the "
                              "vectors of bpr, mf, als or sasrec")
        self.placeholder, self.placeholder_id = placeholder
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.model_name, self.source, self.source_sha256 = vectors.model, source, source_sha256
        self.unknown_rate = unknown_rate
        self.user_index = {u: k for k, u in enumerate(vectors.user_ids)}
        self.item_index = {i: k for k, i in enumerate(vectors.item_ids)}
        ones = np.ones((len(vectors.user_ids), 1), dtype=np.float32)
        items = np.concatenate([vectors.item_vectors, vectors.item_bias[:, None]], axis=1)
        self.d_in = items.shape[1]
        self.register_buffer("item_inputs", torch.from_numpy(_rms_scaled(items)), persistent=False)
        for stage in ("test", "valid"):
            users = np.concatenate([vectors.users_at(stage), ones], axis=1)
            self.register_buffer(f"user_inputs_{stage}", torch.from_numpy(_rms_scaled(users)), persistent=False)
        self.stage = "test"
        self.proj_hidden = proj_hidden or hidden_size
        alpha = None
        if residual:
            z = self.user_inputs_test @ self.item_inputs.T
            alpha = RESIDUAL_INIT / max(float(z.std()), 1e-6)
        self.projector = Projector(self.d_in, self.proj_hidden, hidden_size, alpha)

    @property
    def residual(self) -> bool:
        return hasattr(self.projector, "alpha")

    def z(self, user: str, items: list[str]) -> np.ndarray:
        """The baseline's score of `items` for `user` (scaled inputs; 0 where either is unknown)."""
        u = self.user_index.get(user)
        out = np.zeros(len(items))
        if u is None:
            return out
        known = [k for k, i in enumerate(items) if i in self.item_index]
        if known:
            with torch.no_grad():
                users = getattr(self, f"user_inputs_{self.stage}")
                rows = self.item_inputs[[self.item_index[items[k]] for k in known]]
                out[known] = (rows.float() @ users[u].float()).cpu().numpy()
        return out

    def offsets(self, user: str, items: list[str]) -> np.ndarray:
        """What the residual adds to each item's score (zeros without a residual)."""
        if not self.residual:
            return np.zeros(len(items))
        return float(self.projector.alpha.detach()) * self.z(user, items)

    # -- ids -----------------------------------------------------------------------------------
    def id_of(self, kind: str, key: str) -> int:
        v, n_users = self.vocab_size, len(self.user_index)
        if kind == "user":
            k = self.user_index.get(key)
            return v if k is None else v + 2 + k
        k = self.item_index.get(key)
        return v + 1 if k is None else v + 2 + n_users + k

    def set_stage(self, stage: str) -> None:
        """Which user vectors slots read: those scoring the test or the validation target."""
        if stage not in ("test", "valid"):
            raise ValueError(stage)
        self.stage = stage

    # -- vectors -------------------------------------------------------------------------------
    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Projected vectors (k, hidden) of slot ids (k,)."""
        r = ids - self.vocab_size
        n_users = len(self.user_index)
        if self.training and self.unknown_rate > 0:  # train the fallback on a share of the slots
            drop = torch.rand(r.shape, device=r.device) < self.unknown_rate
            is_user = (r == 0) | ((r >= 2) & (r < 2 + n_users))
            r = torch.where(drop, torch.where(is_user, 0, 1), r)
        users = getattr(self, f"user_inputs_{self.stage}")
        unknown = self.projector.unknown
        inputs = torch.zeros((len(r), self.d_in), dtype=unknown.dtype, device=r.device)
        is_user = (r == 0) | ((r >= 2) & (r < 2 + n_users))
        known_user = (r >= 2) & (r < 2 + n_users)
        known_item = r >= 2 + n_users
        inputs = torch.where((r == 0)[:, None], unknown[0], inputs)
        inputs = torch.where((r == 1)[:, None], unknown[1], inputs)
        inputs = torch.where(known_user[:, None], users[(r - 2).clamp(0, n_users - 1)], inputs)
        inputs = torch.where(known_item[:, None], self.item_inputs[(r - 2 - n_users).clamp(0, len(self.item_index) - 1)],
                             inputs)
        return torch.where(is_user[:, None], self.projector.user(inputs), self.projector.item(inputs))

    # -- files ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.projector.state_dict().items()}, folder / WEIGHTS)
        (folder / CONFIG).write_text(json.dumps({
            "vectors": self.source, "vectors_sha256": self.source_sha256, "vectors_model": self.model_name,
            "d_in": self.d_in, "proj_hidden": self.proj_hidden, "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size, "placeholder": self.placeholder, "placeholder_id": self.placeholder_id,
            "unknown_rate": self.unknown_rate, "residual": self.residual}, indent=1))


def build_table(source: str, vocab_size: int, hidden_size: int, tokenizer, proj_hidden: int = 0,
                unknown_rate: float = 0.0, residual: bool = False) -> SlotTable:
    """A new (untrained) table over the vectors of a baseline run."""
    path = vectors_path(source)
    vectors = Vectors.load(path)
    return SlotTable(vectors, vocab_size, hidden_size, placeholder_token(tokenizer), proj_hidden, unknown_rate,
                     source=str(path.resolve()), source_sha256=sha256_file(path), residual=residual)


def has_cf(adapter: str) -> bool:
    return bool(adapter) and (Path(adapter) / CONFIG).is_file()


def load_table(adapter: str) -> SlotTable:
    """The trained table of an adapter folder, over the very vectors it was trained with."""
    folder = Path(adapter)
    meta = json.loads((folder / CONFIG).read_text())
    path = Path(meta["vectors"])
    if not path.is_file():
        raise ConfigError(f"{folder / CONFIG}: the collaborative vectors {path} are missing; the adapter needs the "
                          "baseline run it was trained with")
    digest = sha256_file(path)
    if digest != meta["vectors_sha256"]:
        raise ConfigError(f"{folder / CONFIG}: {path} changed since the adapter was trained (sha256 "
                          f"{meta['vectors_sha256'][:12]} -> {digest[:12]}); a refitted baseline has other vectors: "
                          "retrain the adapter on it")
    table = SlotTable(Vectors.load(path), int(meta["vocab_size"]), int(meta["hidden_size"]),
                      (meta["placeholder"], int(meta["placeholder_id"])), int(meta["proj_hidden"]),
                      float(meta["unknown_rate"]), source=str(path), source_sha256=digest,
                      residual=bool(meta.get("residual", False)))
    from safetensors.torch import load_file

    table.projector.load_state_dict(load_file(str(folder / WEIGHTS)))
    return table


def attach(model, table: SlotTable) -> SlotTable:
    """Make `model` (a causal LM or a peft model around one) read slot ids as projected vectors.

    The table becomes a submodule of the causal LM (`cf_slots`: it moves with `.to()`, its projector
    trains with the adapter), and hooks on the input embedding layer swap slot ids for the
    placeholder id before the lookup and the looked-up rows for the projected vectors after it.
    """
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    embedding = causal.get_input_embeddings()
    if embedding.num_embeddings != table.vocab_size:
        raise ConfigError(f"collaborative tokens: the model has {embedding.num_embeddings} token embeddings, the "
                          f"adapter was trained with {table.vocab_size}; use the model it was trained on")
    if table.hidden_size != embedding.embedding_dim:
        raise ConfigError(f"collaborative tokens: hidden size {embedding.embedding_dim} != {table.hidden_size} of the "
                          "projector; use the model the adapter was trained on")
    causal.cf_slots = table
    table.to(embedding.weight.device)
    state: dict[str, torch.Tensor] = {}

    def before(module, args):
        ids = args[0]
        state["ids"] = ids
        mask = ids >= table.vocab_size
        return (ids.masked_fill(mask, table.placeholder_id), *args[1:]) if bool(mask.any()) else None

    def after(module, args, out):
        ids = state.pop("ids")
        mask = ids >= table.vocab_size
        if not bool(mask.any()):
            return out
        out = out.clone()
        out[mask] = table.rows(ids[mask]).to(out.dtype)
        return out

    embedding.register_forward_pre_hook(before)
    embedding.register_forward_hook(after)
    return table


def slots_of(model) -> SlotTable | None:
    """The table attached to a model, if any."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(causal, "cf_slots", None)
