"""Semantic IDs by residual quantisation of item vectors (RQ-KMeans; TIGER, Rajput et al. 2023;
GRID, Ju et al. 2025).

Level 1 runs k-means (faiss) on the items' vectors; each next level runs k-means on what the levels
before it leave unexplained (the residual), so items with similar vectors share their first codes.
Items that still share every code get a last level, 0, 1, 2, ... in id order, so every item's code is
unique and all codes have the same length (no code is a prefix of another). A code is written as
one token per level: `<a_12><b_3><c_40><d_0>`. The codes, their sizes and statistics (collisions
before the last level, codes used per level) are saved as `codes.json` + `sid.json` in a folder.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.dataset import Dataset, Item
from llmrec.data.split import natural_key
from llmrec.errors import DataError

LETTERS = "abcdefghijklmnop"
CODES, META = "codes.json", "sid.json"


def token(level: int, code: int) -> str:
    return f"<{LETTERS[level]}_{code}>"


@dataclass
class SemanticIDs:
    items: list[str]
    codes: np.ndarray  # (items, levels + 1): the quantised levels, then the disambiguation level
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.row = {i: k for k, i in enumerate(self.items)}

    @property
    def sizes(self) -> list[int]:
        """Codes per level (the last: the largest group of items sharing every other code)."""
        return [int(x) + 1 for x in self.codes.max(0)]

    def text(self, item: str) -> str:
        return "".join(token(level, int(c)) for level, c in enumerate(self.codes[self.row[item]]))

    def tokens(self) -> list[str]:
        """Every code token, level by level: the tokens the LM learns."""
        return [token(level, c) for level, n in enumerate(self.sizes) for c in range(n)]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps({i: self.codes[k].tolist() for k, i in enumerate(self.items)},
                                         sort_keys=True).encode()).hexdigest()

    def stats(self) -> dict[str, Any]:
        """Collisions before the last level and how much of each codebook the items use."""
        prefix = Counter(tuple(c[:-1]) for c in self.codes.tolist())
        out: dict[str, Any] = {"items": len(self.items), "sizes": self.sizes,
                               "items_sharing_a_code_before_the_last_level": sum(n for n in prefix.values() if n > 1),
                               "largest_group": max(prefix.values()), "distinct_prefixes": len(prefix)}
        for level in range(self.codes.shape[1] - 1):
            counts = np.bincount(self.codes[:, level])
            p = counts[counts > 0] / counts.sum()
            out[f"level_{level + 1}"] = {"used": int((counts > 0).sum()), "perplexity": round(float(np.exp(-(p * np.log(p)).sum())), 2)}
        return out

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CODES).write_text(json.dumps({i: self.codes[k].tolist() for k, i in enumerate(self.items)}))
        (folder / META).write_text(json.dumps({**self.meta, "sha256": self.sha256, "stats": self.stats()}, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SemanticIDs:
        folder = Path(folder)
        if not (folder / CODES).is_file():
            raise DataError(f"{folder} holds no semantic IDs ({CODES}); build them with `llmrec sid build`")
        try:
            codes = json.loads((folder / CODES).read_text())
            meta = json.loads((folder / META).read_text()) if (folder / META).is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{folder}: unreadable semantic IDs ({e})") from None
        items = sorted(codes, key=natural_key)
        sid = cls(items, np.array([codes[i] for i in items], dtype=np.int64), meta)
        if meta.get("sha256") and meta["sha256"] != sid.sha256:
            raise DataError(f"{folder / CODES} changed after it was built (sha256 {sid.sha256[:12]}, recorded "
                            f"{meta['sha256'][:12]}); rebuild with `llmrec sid build`")
        return sid


def quantise(vectors: np.ndarray, levels: int, codebook: int, seed: int = 0) -> np.ndarray:
    """(items, levels) codes: k-means per level on the residual of the levels before (faiss)."""
    import faiss

    if codebook > len(vectors):
        raise DataError(f"sid.codebook={codebook} is more than the {len(vectors)} items to quantise")
    residual = np.ascontiguousarray(vectors, dtype=np.float32)
    out = np.zeros((len(vectors), levels), dtype=np.int64)
    for level in range(levels):
        km = faiss.Kmeans(residual.shape[1], codebook, niter=25, seed=seed + level, verbose=False,
                           min_points_per_centroid=1)
        km.train(residual)
        _, assigned = km.index.search(residual, 1)
        out[:, level] = assigned[:, 0]
        residual = np.ascontiguousarray(residual - km.centroids[assigned[:, 0]], dtype=np.float32)
    return out


def assign(items: list[str], vectors: np.ndarray, levels: int, codebook: int, seed: int = 0,
           meta: dict[str, Any] | None = None) -> SemanticIDs:
    """Semantic IDs of `items` (rows of `vectors`): `levels` quantised levels and a last one that
    tells apart the items sharing them (0, 1, ... in id order)."""
    q = quantise(vectors, levels, codebook, seed)
    last = np.zeros(len(items), dtype=np.int64)
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, code in enumerate(map(tuple, q.tolist())):
        groups.setdefault(code, []).append(k)
    for members in groups.values():
        for n, k in enumerate(sorted(members, key=lambda k: natural_key(items[k]))):
            last[k] = n
    return SemanticIDs(list(items), np.concatenate([q, last[:, None]], axis=1),
                       {**(meta or {}), "levels": levels, "codebook": codebook, "seed": seed})


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows centred on their mean and scaled to unit length (text encoders' vectors share one big
    direction that would otherwise decide the first level alone)."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v - v.mean(0)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def with_codes(dataset: Dataset, sid: SemanticIDs) -> Dataset:
    """The dataset whose items carry `sid` (their code text), as `sid` templates read it."""
    missing = [i for i in dataset.items if i not in sid.row]
    if missing:
        raise DataError(f"{len(missing)} items of {dataset.name} have no semantic ID (e.g. {missing[:3]}); "
                        "build the codes on this dataset's prepared folder")
    items = {i: Item(it.id, it.title, it.year, it.genres, {**it.fields, "sid": sid.text(i)})
             for i, it in dataset.items.items()}
    return Dataset(dataset.name, items, dataset.interactions, dataset.users, dataset.item_noun,
                   dataset.duplicate_rows_dropped)
