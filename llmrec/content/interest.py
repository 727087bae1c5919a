"""A user's interest as one vector pooled over their history's item vectors (no training).

`mean` weighs every history item alike; `recency` halves an item's weight every `half_life`
items back from the most recent (tastes drift: the last items say most about the next one, the
premise of sequential recommenders). The score of an item is the cosine between the user's
vector and the item's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.content.index import normalise

HALF_LIVES = (0.5, 1.0, 3.0, 10.0, 30.0, 100.0)  # recency: the grid searched on the validation items


def recency_weights(n: int, half_life: float | None) -> np.ndarray:
    """Weights of n history items, oldest first; None: all equal (the mean)."""
    if half_life is None:
        return np.full(n, 1.0 / max(n, 1))
    w = 0.5 ** (np.arange(n - 1, -1, -1) / half_life)
    return w / w.sum()


def interest_vectors(item_vectors: np.ndarray, histories: Sequence[np.ndarray], half_life: float | None) -> np.ndarray:
    """One unit vector per user: the weighted mean of the (unit) vectors of their history's items."""
    unit = normalise(item_vectors)
    out = np.zeros((len(histories), unit.shape[1]), dtype=np.float32)
    for k, h in enumerate(histories):
        if len(h):
            out[k] = recency_weights(len(h), half_life) @ unit[h]
    return normalise(out)
