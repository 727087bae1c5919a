"""The one data model every recommender in llmrec reads.

Interactions are kept columnar (a pandas frame in original file order) because splits, filters and
baselines work on whole columns; items and user profiles are small dicts that templates read.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
# Seconds since 1970 (UTC) that a date can be written for: datetime's range, a day inside each end.
MIN_TIMESTAMP = -62135510400.0  # 0001-01-02
MAX_TIMESTAMP = 253402128000.0  # 9999-12-30


def timestamp_problem(value: float) -> str:
    """Why `value` is not a usable timestamp ("" when it is): finite and within datetime's range, so
    templates can show its date (a millisecond or nanosecond timestamp is far outside it)."""
    if not math.isfinite(value):
        return f"expected a finite number of seconds since 1970, got {value}"
    if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        return (f"{value:g} is outside the dates a timestamp can name (years 1-9999 in seconds since 1970); "
                "a timestamp in milliseconds or nanoseconds must be converted to seconds")
    return ""


@dataclass(frozen=True)
class Item:
    """A catalogue entry; `fields` keeps any extra free-text columns of the items file."""

    id: str
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "year": self.year, "genres": list(self.genres), **self.fields}


@dataclass(frozen=True)
class Interaction:
    """One event in a user's history, as templates see it."""

    item: Item
    rating: float
    timestamp: float


@dataclass
class Dataset:
    """Users, items and timestamped rated interactions.

    `interactions` has columns user_id, item_id (str), rating, timestamp (float64) and a `row`
    column holding the original file order (the split's last-resort time tie-break).
    `duplicate_rows_dropped` counts exact duplicate rows the loader removed, so stats can report it.
    """

    name: str
    items: dict[str, Item]
    interactions: pd.DataFrame
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    item_noun: str = "movie"
    duplicate_rows_dropped: int = 0

    def __post_init__(self) -> None:
        missing = [c for c in (*INTERACTION_COLUMNS, "row") if c not in self.interactions.columns]
        assert not missing, f"interactions frame lacks columns {missing}"

    @property
    def n_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    @property
    def n_items(self) -> int:
        """Catalogue size (items file), which may exceed the items that have interactions."""
        return len(self.items)

    @property
    def rating_scale(self) -> str:
        """The ratings' range as templates print it ("1-5", "0.5-5"; "1" for implicit feedback)."""
        r = self.interactions["rating"]
        lo, hi = (float(r.min()), float(r.max())) if len(r) else (1.0, 1.0)
        return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def fingerprint(self) -> str:
        """sha256 of the interactions (in order) and item ids/titles: candidate files carry it so
        they are never scored against different data."""
        h = hashlib.sha256()
        df = self.interactions
        for col in ("user_id", "item_id"):
            h.update("\x1f".join(df[col].tolist()).encode())
        for col in ("rating", "timestamp"):
            h.update(np.ascontiguousarray(df[col].to_numpy(np.float64)).tobytes())
        for item in self.items.values():
            h.update(f"{item.id}\x1f{item.title}\x1e".encode())
        return h.hexdigest()[:16]

    def stats(self) -> dict[str, Any]:
        df = self.interactions
        per_user = df.groupby("user_id").size()
        per_item = df.groupby("item_id").size()
        n_u, n_i = self.n_users, int(per_item.size)
        return {
            "dataset": self.name,
            "users": n_u,
            "items": self.n_items,
            "items_with_interactions": n_i,
            "interactions": self.n_interactions,
            "density": round(self.n_interactions / max(1, n_u * n_i), 5),
            "history_len_min": int(per_user.min()) if n_u else 0,
            "history_len_median": float(per_user.median()) if n_u else 0.0,
            "history_len_max": int(per_user.max()) if n_u else 0,
            "rating_mean": round(float(df["rating"].mean()), 4) if len(df) else 0.0,
            "time_min": float(df["timestamp"].min()) if len(df) else 0.0,
            "time_max": float(df["timestamp"].max()) if len(df) else 0.0,
            "duplicate_rows_dropped": self.duplicate_rows_dropped,
        }

    def with_interactions(self, interactions: pd.DataFrame) -> Dataset:
        """Same items and users, other interactions (filters build on this)."""
        return Dataset(self.name, self.items, interactions.reset_index(drop=True), self.users, self.item_noun,
                       self.duplicate_rows_dropped)

    def filter(self, min_rating: float | None = None, kcore: int = 0) -> Dataset:
        """Keep interactions rated >= `min_rating`, then the k-core: repeatedly drop users and items
        with fewer than `kcore` interactions until none is left (the usual preprocessing of SASRec,
        P5 and most sequential recommendation papers)."""
        df = self.interactions
        if min_rating is not None:
            df = df[df["rating"] >= min_rating]
        if kcore > 1:
            while True:
                u = df.groupby("user_id")["item_id"].transform("size")
                i = df.groupby("item_id")["user_id"].transform("size")
                keep = (u >= kcore) & (i >= kcore)
                if keep.all():
                    break
                df = df[keep]
        return self.with_interactions(df)
