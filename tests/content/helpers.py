"""A cheap real-content encoder and small real splits shared by the content tests."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from llmrec.baselines import TrainData
from llmrec.data.split import Split


class WordsEncoder:
    """Hashed bag of words of each item text (its title words, year and genres): a real content
    signal at no cost, standing in for an LM where the test is about what comes after encoding.
    Counts its calls, as the real encoders do."""

    name = "words"
    poolings = ("mean",)

    def __init__(self, dim: int = 256, tag: str = "") -> None:
        self.dim, self.tag, self.calls = dim, tag, 0

    def identity(self) -> dict[str, str]:
        return {"encoder": self.name, "model": f"hashed-words-{self.dim}{self.tag}"}

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for k, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9']+", text.lower()):
                out[k, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return {"mean": out}


def first_users(split: Split, n: int) -> TrainData:
    """TrainData of the first n users of `split` (cold items kept)."""
    users = dict(list(split.users.items())[:n])
    return TrainData.from_split(Split(users, split.dataset_hash, cold_items=split.cold_items))
