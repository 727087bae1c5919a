"""Chronological splits: leave-one-out and ratio (per user), global time (one cut date for everyone).

Each user's interactions are put in time order; interactions with the same timestamp are ordered
by the tie-break. "hash" (the default) orders them by a seeded, platform-stable hash of
(seed, user id, item id), then file order: many dumps are sorted by user then item id, so file
order would make the highest tied item id the test target. "file" keeps file order, for logs
whose order within a second is meaningful. Never item id, which leaks the catalogue order.

Each item appears once per user, at its latest occurrence (earlier repeats are dropped and
counted), so a held-out item is never also in that user's history. The last item is the test
target, the one before it the validation target, the rest is training history.

Ratio (`by_ratio`, e.g. 8:1:1, RecBole's "RO" order): each user's distinct items in time order are
cut by share: the last ~10% are test targets, the ~10% before them validation targets, the rest
training history. Each part keeps at least one item (so a user needs 3), and part sizes are rounded
to the nearest item (halves up). Several held-out items per user are ranked together among the full
catalogue (multi-item metrics, see `llmrec.eval.metrics`); steps that rank one held-out item per
list (sampled lists, retrieval, blends, cold items) refuse such users with a clear error.

Global time (`global_time`, the "timeline" protocol): one cut time for all users, so no model
trains on anything that happened after a test event. A user's sequence is their items before the
cut (each once, at its latest occurrence there) followed by their first item after the cut that
is new to them: that item is the test target, the last one before the cut the validation target.
Users with no new item after the cut still train: their items before the cut form a leave-one-out
sequence inside the past (training history, a validation target, and a last item no one uses),
marked `train_only` so that no test list is built for them. Users with fewer items than that are
skipped and counted.

Cold start (`hold_out_items`): a seeded share of the items is held out of training entirely. A
held-out ("cold") item stays only where it is a user's test target and is dropped from every
other position, so no training history and no validation target holds it; models that learn
from interactions alone cannot know it, models that read item content can.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.config import parse_ratio
from llmrec.data.dataset import Dataset, Interaction
from llmrec.errors import ConfigError, DataError

MIN_SEQUENCE = 3  # train (>= 1) + valid + test
TIE_BREAKS = ("hash", "file")


def natural_key(s: str) -> tuple[int, int | str]:
    """Sort numeric ids numerically and the rest as text."""
    return (0, int(s)) if s.isdigit() else (1, s)


@dataclass(frozen=True)
class UserSequence:
    """One user's items in time order: training history, then `n_valid` validation targets, then
    `n_test` test targets (one each, except on a ratio split)."""

    user_id: str
    items: tuple[str, ...]
    ratings: tuple[float, ...]
    timestamps: tuple[float, ...]
    n_valid: int = 1
    n_test: int = 1

    @property
    def n_train(self) -> int:
        return len(self.items) - self.n_valid - self.n_test

    @property
    def test(self) -> str:
        return self.target("test")

    @property
    def valid(self) -> str:
        return self.target("valid")

    @property
    def train(self) -> tuple[str, ...]:
        return self.items[:self.n_train]

    def targets(self, stage: str) -> tuple[str, ...]:
        """Every held-out item of `stage`, oldest first."""
        if stage == "test":
            return self.items[len(self.items) - self.n_test:]
        return self.items[self.n_train:self.n_train + self.n_valid]

    def target(self, stage: str) -> str:
        """The one held-out item of `stage`; an error for a user with several (a ratio split)."""
        held = self.targets(stage)
        if len(held) != 1:
            raise DataError(f"user {self.user_id!r} has {len(held)} held-out {stage} items (a ratio split); this "
                            "step ranks one held-out item per user: evaluate on full candidates "
                            "(full.test), or prepare a leave-one-out or global-time split")
        return held[0]

    def history_range(self, stage: str, max_len: int | None = None) -> range:
        """Indices of the history seen when predicting `stage`'s target(s), oldest first."""
        end = self.n_train + (self.n_valid if stage == "test" else 0)
        start = 0 if max_len is None else max(0, end - max_len)
        return range(start, end)

    def history(self, stage: str, max_len: int | None = None) -> tuple[str, ...]:
        r = self.history_range(stage, max_len)
        return self.items[r.start:r.stop]

    def events(self, dataset: Dataset, stage: str, max_len: int | None = None) -> list[Interaction]:
        """History as `Interaction`s (item metadata, rating, timestamp) for prompt templates."""
        return [Interaction(dataset.items[self.items[k]], self.ratings[k], self.timestamps[k])
                for k in self.history_range(stage, max_len)]


@dataclass
class Split:
    """All users' sequences, the count of users skipped for having fewer than 3 items, the count of
    repeated (user, item) interactions dropped, and the tie-break that ordered same-time items."""

    users: dict[str, UserSequence]
    dataset_hash: str
    skipped_users: int = 0
    repeats_dropped: int = 0
    tie_break: str = "file"  # split files written before the setting existed used file order
    seed: int = 0
    cold_items: frozenset[str] = frozenset()  # items held out of training (`hold_out_items`)
    method: str = "leave-one-out"
    cut: float | None = None  # global-time: the cut, Unix seconds (items at or after it are "after")
    train_only: frozenset[str] = frozenset()  # global-time: users with no test target (train and validate only)
    ratio: str = ""  # ratio split: the train:valid:test shares it was cut with

    def __iter__(self) -> Iterator[UserSequence]:
        return iter(self.users.values())

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, user_id: str) -> UserSequence:
        try:
            return self.users[user_id]
        except KeyError:
            raise DataError(f"unknown user_id {user_id!r} (not in the split)") from None

    def save(self, path: Path) -> None:
        meta = {"method": self.method, "dataset_hash": self.dataset_hash, "skipped_users": self.skipped_users,
                "repeats_dropped": self.repeats_dropped, "tie_break": self.tie_break, "seed": self.seed}
        if self.cold_items:  # only cold-start splits carry the key: other split files stay as they were
            meta["cold_items"] = sorted(self.cold_items, key=natural_key)
        if self.cut is not None:
            meta["cut"] = self.cut
            meta["train_only"] = sorted(self.train_only, key=natural_key)
        if self.ratio:
            meta["ratio"] = self.ratio
        with open(path, "w") as f:
            f.write(json.dumps({"meta": meta}) + "\n")
            for s in self:
                rec = {"user_id": s.user_id, "items": list(s.items), "ratings": list(s.ratings),
                       "timestamps": list(s.timestamps)}
                if (s.n_valid, s.n_test) != (1, 1):
                    rec["held_out"] = [s.n_valid, s.n_test]
                f.write(json.dumps(rec) + "\n")

    @classmethod
    def load(cls, path: Path) -> Split:
        if not path.is_file():
            raise DataError(f"split file not found: {path} (run `llmrec prepare` first)")
        users: dict[str, UserSequence] = {}
        with open(path) as f:
            try:
                meta = json.loads(f.readline())["meta"]
                for n, line in enumerate(f, 2):
                    r = json.loads(line)
                    n_valid, n_test = r.get("held_out", (1, 1))
                    users[r["user_id"]] = UserSequence(r["user_id"], tuple(r["items"]), tuple(r["ratings"]),
                                                       tuple(r["timestamps"]), n_valid, n_test)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}: malformed split file ({e})") from None
        return cls(users, meta["dataset_hash"], meta.get("skipped_users", 0), meta.get("repeats_dropped", 0),
                   meta.get("tie_break", "file"), meta.get("seed", 0), frozenset(meta.get("cold_items", ())),
                   meta.get("method", "leave-one-out"), meta.get("cut"), frozenset(meta.get("train_only", ())),
                   meta.get("ratio", ""))

    def evaluated(self, stage: str) -> Iterator[UserSequence]:
        """The users with a `stage` target: every user, except the train-only ones at test."""
        return (s for s in self if stage != "test" or s.user_id not in self.train_only)


def tie_hash(seed: int, user_id: str, item_id: str) -> int:
    """The "hash" tie-break key: the same on every platform and Python version (unlike `hash`)."""
    digest = hashlib.blake2b(f"{seed}\x1f{user_id}\x1f{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _ordered(dataset: Dataset, tie_break: str, seed: int) -> pd.DataFrame:
    """The interactions in time order, ties broken by `tie_break`."""
    if tie_break not in TIE_BREAKS:
        raise ConfigError(f"split.tie_break: expected one of hash, file; got {tie_break!r}")
    df = dataset.interactions
    keys = ["timestamp", "row"]
    if tie_break == "hash":
        tie = [tie_hash(seed, u, i) for u, i in zip(df["user_id"].tolist(), df["item_id"].tolist())]
        df = df.assign(tie=np.array(tie, dtype=np.uint64))
        keys = ["timestamp", "tie", "row"]
    return df.sort_values(keys, kind="stable")


def _sequence(u: str, g: pd.DataFrame) -> UserSequence:
    return UserSequence(u, tuple(g["item_id"].tolist()), tuple(g["rating"].tolist()), tuple(g["timestamp"].tolist()))


def leave_one_out(dataset: Dataset, tie_break: str = "hash", seed: int = 0) -> Split:
    """Split every user with >= 3 distinct items; users with fewer are skipped and counted."""
    df = _ordered(dataset, tie_break, seed)
    repeat = df.duplicated(["user_id", "item_id"], keep="last")
    df = df[~repeat]
    users: dict[str, UserSequence] = {}
    skipped = 0
    groups = {u: g for u, g in df.groupby("user_id", sort=False)}
    for u in sorted(groups, key=natural_key):
        g = groups[u]
        if len(g) < MIN_SEQUENCE:
            skipped += 1
            continue
        users[u] = _sequence(u, g)
    return Split(users, dataset.fingerprint(), skipped, int(repeat.sum()), tie_break, seed)


def held_out_sizes(n: int, shares: tuple[float, float, float]) -> tuple[int, int]:
    """(validation, test) item counts for a user with `n` >= 3 items: each share of `n` rounded to the
    nearest item (halves up), at least 1 each, and at least 1 training item left (taken from the larger part)."""
    n_valid, n_test = (max(1, int(n * x + 0.5)) for x in shares[1:])  # halves round up
    while n - n_valid - n_test < 1:
        if n_test >= n_valid:
            n_test -= 1
        else:
            n_valid -= 1
    return n_valid, n_test


def by_ratio(dataset: Dataset, ratio: str = "8:1:1", tie_break: str = "hash", seed: int = 0) -> Split:
    """The per-user ratio split: each user's last items (by share) are test targets, the ones before
    them validation targets; users with fewer than 3 distinct items are skipped and counted."""
    shares = parse_ratio(ratio)
    loo = leave_one_out(dataset, tie_break, seed)
    users = {u: UserSequence(u, s.items, s.ratings, s.timestamps, *held_out_sizes(len(s.items), shares))
             for u, s in loo.users.items()}
    return Split(users, loo.dataset_hash, loo.skipped_users, loo.repeats_dropped, tie_break, seed,
                 method="ratio", ratio=str(ratio))


def cut_time(dataset: Dataset, cut: str) -> float:
    """`split.cut` in Unix seconds: a share in (0, 1) is the time before which that share of the
    interactions lies (0.9: the last 10% of the log is after the cut); a number >= 1 is Unix
    seconds; anything else is an ISO date or date-time, read as UTC."""
    try:
        value = float(cut)
    except ValueError:
        try:
            when = datetime.fromisoformat(cut)
        except ValueError:
            raise ConfigError(f"split.cut: expected a share in (0, 1), Unix seconds or an ISO date such as "
                              f"2018-01-01; got {cut!r}") from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if 0 < value < 1:
        return float(np.quantile(dataset.interactions["timestamp"].to_numpy(np.float64), value, method="lower"))
    if value >= 1:
        return value
    raise ConfigError(f"split.cut: a share must be in (0, 1) and Unix seconds >= 1; got {cut!r}")


def global_time(dataset: Dataset, cut: str, tie_break: str = "hash", seed: int = 0) -> Split:
    """The timeline split: every user's items before `cut`, then their first new item after it.

    Interactions at or after the cut never enter a sequence except as that test target, so every
    model trains on the past only. Users with no new item after the cut but >= 3 distinct items
    before it are kept as `train_only`; users with fewer are skipped and counted.
    """
    at = cut_time(dataset, cut)
    df = _ordered(dataset, tie_break, seed)
    after = df["timestamp"].to_numpy(np.float64) >= at
    before = df[~after]
    repeat = before.duplicated(["user_id", "item_id"], keep="last")
    before = before[~repeat]
    firsts = {u: g for u, g in df[after].groupby("user_id", sort=False)}
    users: dict[str, UserSequence] = {}
    train_only: set[str] = set()
    skipped = 0
    for u, g in sorted(before.groupby("user_id", sort=False), key=lambda ug: natural_key(ug[0])):
        later = firsts.get(u)
        new = later[~later["item_id"].isin(g["item_id"])] if later is not None else None
        if new is not None and not new.empty and len(g) >= MIN_SEQUENCE - 1:
            users[u] = _sequence(u, pd.concat([g, new.iloc[:1]]))
        elif len(g) >= MIN_SEQUENCE:
            users[u] = _sequence(u, g)
            train_only.add(u)
        else:
            skipped += 1
    skipped += len(set(firsts) - set(before["user_id"]))  # users who appear only after the cut
    return Split(users, dataset.fingerprint(), skipped, int(repeat.sum()), tie_break, seed,
                 method="global-time", cut=at, train_only=frozenset(train_only))


def hold_out_items(split: Split, share: float, seed: int) -> Split:
    """The cold-start split: `round(share x items)` items, drawn uniformly with `seed`, held out of training.

    A user whose last item is cold keeps it as the test target; every other occurrence of a cold
    item is dropped, so training histories and validation targets hold warm items only. Users left
    with fewer than 3 items are skipped and counted, as in `leave_one_out`.
    """
    if not 0 < share < 1:
        raise ConfigError(f"split.cold_items: the share of items held out must be in (0, 1); got {share}")
    if split.ratio:
        raise ConfigError("split.cold_items holds out one test item per user; it does not combine with "
                          "split.method=ratio")
    universe = sorted({i for s in split for i in s.items}, key=natural_key)
    rng = np.random.default_rng([seed, zlib.crc32(b"cold-items")])
    chosen = rng.choice(len(universe), size=max(1, round(share * len(universe))), replace=False)
    cold = frozenset(universe[k] for k in chosen)
    users: dict[str, UserSequence] = {}
    skipped = split.skipped_users
    for s in split:
        test = len(s.items) - 1 if s.user_id not in split.train_only else -1
        keep = [k for k, i in enumerate(s.items) if i not in cold or k == test]
        if len(keep) < MIN_SEQUENCE:
            skipped += 1
            continue
        users[s.user_id] = UserSequence(s.user_id, tuple(s.items[k] for k in keep),
                                        tuple(s.ratings[k] for k in keep), tuple(s.timestamps[k] for k in keep))
    return Split(users, split.dataset_hash, skipped, split.repeats_dropped, split.tie_break, split.seed, cold,
                 split.method, split.cut, split.train_only & set(users))


def train_item_counts(split: Split, universe: list[str]) -> np.ndarray:
    """Interaction counts over training histories only (no validation/test targets: no leakage)."""
    index = {i: k for k, i in enumerate(universe)}
    counts = np.zeros(len(universe), dtype=np.int64)
    for s in split:
        for i in s.train:
            counts[index[i]] += 1
    return counts
