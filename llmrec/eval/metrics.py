"""Ranking metrics for a user's held-out item(s), and their means over a run's users.

For one held-out item at rank r: HR@K = Recall@K = 1[r <= K], NDCG@K = 1/log2(r+1) if r <= K else
0, MRR = 1/r. Ties get the expected rank: the mean of the optimistic and pessimistic rank (a model
cannot gain from ties, whatever order the candidates come in). With several held-out items T (a
ratio split), each ranked among all candidates, the other held-out items included: HR@K = 1 if any
is in the top K, Recall@K = |hits in the top K| / |T|, NDCG@K = the DCG of the hits divided by the
ideal DCG of min(K, |T|) hits, MRR = 1 / the best rank (RecBole's definitions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

KS = (1, 5, 10)
METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR", "Recall@5", "Recall@10")


def expected_rank(scores: np.ndarray, positive: int) -> float:
    """1-based rank of `scores[positive]` among `scores` (higher is better), ties averaged."""
    s = np.asarray(scores, dtype=np.float64)
    p = s[positive]
    if np.isnan(p):
        raise ValueError("the positive's score is NaN")
    better = int(np.sum(s > p))
    ties = int(np.sum(s == p)) - 1
    return 1.0 + better + ties / 2.0


def expected_ranks(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """`expected_rank` row by row: the rank of `scores[u, positive[u]]` in each row of a users x
    items matrix (NaN entries, e.g. padding, never rank above anything)."""
    p = scores[np.arange(len(scores)), positive][:, None]
    return 1.0 + (scores > p).sum(1) + ((scores == p).sum(1) - 1) / 2.0


def ndcg(rank: np.ndarray | float, k: int) -> np.ndarray:
    """NDCG@k of a held-out item at (expected) rank `rank`: 1/log2(rank+1) within the top k, else 0."""
    rank = np.asarray(rank, dtype=np.float64)
    return np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)


def ideal_dcg(n: np.ndarray | int, k: int) -> np.ndarray:
    """The DCG@k of `n` held-out items ranked first: the normaliser of multi-item NDCG."""
    gains = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    return gains[np.minimum(np.asarray(n), k) - 1]


def user_metrics(rank: float | Sequence[float]) -> dict[str, float]:
    """Every metric of one user from the expected rank of their held-out item, or the ranks of all
    of their held-out items."""
    ranks = np.atleast_1d(np.asarray(rank, dtype=np.float64))  # None (not in a generated list): never a hit
    ranks = np.where(np.isnan(ranks), np.inf, ranks)
    out: dict[str, float] = {}
    for k in KS:
        out[f"HR@{k}"] = float((ranks <= k).any())
    for k in (5, 10):
        out[f"NDCG@{k}"] = float(ndcg(ranks, k).sum() / ideal_dcg(len(ranks), k))
    out["MRR"] = 1.0 / float(ranks.min())
    for k in (5, 10):
        out[f"Recall@{k}"] = float((ranks <= k).mean())
    return out


def aggregate(ranks: Iterable[float]) -> dict[str, float]:
    """Mean of each per-user metric, plus the number of users."""
    rows = [user_metrics(r) for r in ranks]
    if not rows:
        return {"users": 0}
    out: dict[str, float] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["users"] = len(rows)
    return out


def user_rows_metrics(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-user metrics of `ranks.jsonl` rows; a user whose held-out item a retriever missed
    scores 0 on everything, and users without a known held-out item are left out."""
    out = {}
    for r in rows:
        if r.get("missed"):
            out[r["user_id"]] = {k: 0.0 for k in METRICS}
        elif r.get("ranks") is not None:
            out[r["user_id"]] = user_metrics(r["ranks"])
        elif r.get("rank") is not None:
            out[r["user_id"]] = user_metrics(float(r["rank"]))
    return out


def metrics_of_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean metrics over users with a known held-out item; retriever misses count as misses."""
    per_user = user_rows_metrics(rows)
    if not per_user:
        return {"users": 0}
    out = {k: float(np.mean([m[k] for m in per_user.values()])) for k in METRICS}
    out["users"] = len(per_user)
    out["retriever_missed"] = sum(1 for r in rows if r.get("missed"))
    return out


def sums_of_rows(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Per-metric sums over rows (with `users` and `retriever_missed` counts): one block's part of
    `metrics_of_rows`, so a job in blocks adds sums instead of holding every row."""
    rows = list(rows)
    out = dict.fromkeys(METRICS, 0.0) | {"users": 0, "retriever_missed": 0}
    for m in user_rows_metrics(rows).values():
        for k in METRICS:
            out[k] += m[k]
        out["users"] += 1
    out["retriever_missed"] = sum(1 for r in rows if r.get("missed"))
    return out


def metrics_of_sums(parts: Iterable[dict[str, float]]) -> dict[str, float]:
    """`metrics_of_rows` of all rows, from the sums of its blocks."""
    total = dict.fromkeys(METRICS, 0.0) | {"users": 0, "retriever_missed": 0}
    for p in parts:
        for k in total:
            total[k] += p[k]
    if not total["users"]:
        return {"users": 0}
    out = {k: float(total[k] / total["users"]) for k in METRICS}
    return out | {"users": int(total["users"]), "retriever_missed": int(total["retriever_missed"])}
