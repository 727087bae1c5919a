"""Full-catalogue retrieval through a faiss inner-product index over normalised item vectors.

With unit vectors the inner product is the cosine, so one exact `IndexFlatIP` serves both the
full ranking (every item's score, `scores`) and top-K retrieval (`top_k`); an approximate
index can replace it for catalogues far larger than MovieLens without changing the callers.
"""

from __future__ import annotations

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


class ItemIndex:
    def __init__(self, item_vectors: np.ndarray) -> None:
        import faiss

        self.vectors = normalise(item_vectors)
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)

    def __len__(self) -> int:
        return self.index.ntotal

    def top_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, item rows) of the k nearest items per (normalised) query, best first."""
        return self.index.search(normalise(queries), min(k, len(self)))

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """The cosine of every item for every query: (len(queries), n_items), in item order."""
        sims, rows = self.top_k(queries, len(self))
        out = np.empty_like(sims)
        np.put_along_axis(out, rows, sims, axis=1)
        return out
