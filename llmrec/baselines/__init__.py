"""Classic recommenders behind the same scorer interface as the LLM rankers.

Each is fitted on the training part of the leave-one-out split (no validation or test items)
and scores the whole catalogue for any user (`score_all`), so it scores exactly the saved
candidate files the LLM runs score, and the full catalogue as well. Sequence models (SASRec) read
the user's history before the target: the training items for the validation target, the training
items plus the validation item for the test target, as in Kang & McAuley (2018).

On a cold-start split, items held out of training (`TrainData.cold`) are unknown to a model that
learns from interactions alone: `scores_of` gives them its fallback, -inf, as for any item unseen
in training. Models that score items from their content (`cold_start = True`) keep their scores.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from llmrec.baselines.vectors import Vectors
from llmrec.config import BaselineConfig
from llmrec.data.split import Split, natural_key
from llmrec.errors import ConfigError
from llmrec.eval.metrics import ideal_dcg, ndcg
from llmrec.registry import BASELINES, DERIVE


@dataclass
class TrainData:
    """Index maps, the user x item training matrices (binary and ratings, CSR) and each user's
    training items in time order."""

    users: list[str]
    items: list[str]
    user_index: dict[str, int]
    item_index: dict[str, int]
    binary: sp.csr_matrix
    ratings: sp.csr_matrix
    valid: np.ndarray  # per user: index of the (first) validation item
    sequences: list[np.ndarray]  # per user: training item indices, oldest first
    cold: np.ndarray | None = field(default=None)  # per item: held out of training (cold start); None: none
    valid_sets: sp.csr_matrix | None = field(default=None)  # users x items: every validation item (ratio split)

    def __post_init__(self) -> None:
        if self.cold is None:
            self.cold = np.zeros(len(self.items), dtype=bool)
        if self.valid_sets is None:
            n = len(self.valid)
            self.valid_sets = sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), self.valid)),
                                            shape=(n, len(self.items)))

    def valid_items(self, user: int) -> np.ndarray:
        """The user's validation item indices, oldest first (one, except on a ratio split)."""
        v = self.valid_sets
        return v.indices[v.indptr[user]:v.indptr[user + 1]]

    def history(self, user: int, stage: str) -> np.ndarray:
        """Item indices seen before the `stage` target: training items (+ the validation items for test)."""
        seq = self.sequences[user]
        return np.append(seq, self.valid_items(user)) if stage == "test" else seq

    @classmethod
    def from_split(cls, split: Split) -> TrainData:
        users = list(split.users)
        items = sorted({i for s in split for i in s.items}, key=natural_key)
        ui = {u: k for k, u in enumerate(users)}
        ii = {i: k for k, i in enumerate(items)}
        rows, cols, vals = [], [], []
        for s in split:
            last: dict[str, float] = {}
            for i, r in zip(s.items[:s.n_train], s.ratings[:s.n_train]):
                last[i] = r  # a repeated (user, item) keeps its latest rating
            rows += [ui[s.user_id]] * len(last)
            cols += [ii[i] for i in last]
            vals += list(last.values())
        shape = (len(users), len(items))
        ratings = sp.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=shape)
        binary = ratings.copy()
        binary.data[:] = 1.0
        held = [[ii[i] for i in s.targets("valid")] for s in split]
        valid = np.array([h[0] for h in held])
        sequences = [np.array([ii[i] for i in s.train], dtype=np.int64) for s in split]
        cold = np.array([i in split.cold_items for i in items], dtype=bool)
        indptr = np.cumsum([0, *map(len, held)])  # oldest first: CSR keeps the order it is given
        valid_sets = sp.csr_matrix((np.ones(indptr[-1], dtype=np.float32), np.concatenate(held), indptr),
                                   shape=shape)
        return cls(users, items, ui, ii, binary, ratings, valid, sequences, cold, valid_sets)


class Recommender(Protocol):
    name: str

    def fit(self, data: TrainData) -> Recommender: ...

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        """Scores of every item for the given user indices (rows) when predicting the `stage`
        target; only models that read the history before the target (SASRec) depend on `stage`."""
        ...

    def vectors(self) -> Vectors | None:
        """The learned user and item vectors (see `vectors.py`), or None for models without them."""
        ...


def scores_of(model: Recommender, data: TrainData, users: np.ndarray, stage: str = "test") -> np.ndarray:
    """`model.score_all` with the cold-start fallback: held-out items get -inf unless the model
    scores items from their content (`cold_start = True`)."""
    scores = np.asarray(model.score_all(users, stage), dtype=np.float64)
    if data.cold.any() and not getattr(model, "cold_start", False):
        scores[:, data.cold] = -np.inf
    return scores


def score_candidates(model: Recommender, data: TrainData, user_id: str, candidates: Sequence[str]) -> np.ndarray:
    """The scorer interface: one score per candidate (items unseen in training, and on a cold-start
    split the held-out items, get -inf from models without content)."""
    row = scores_of(model, data, np.array([data.user_index[user_id]]), "test")[0]
    return np.array([row[data.item_index[c]] if c in data.item_index else -np.inf for c in candidates])


# name -> the class; `reads`: what a model needs besides the interactions (`use_data(DataConfig)`:
# side data such as a knowledge graph or item text; `use_model(ModelConfig)`: the configured LM).
# Settings: the constructor's plainly typed parameters (`registry.derived_settings`), read from
# `[baseline.<name>]`; their defaults were chosen on the validation items (scripts/tune_baselines.py).
for _name, _target, _reads in (
        ("pop", "llmrec.baselines.popularity:Popularity", ()),
        ("item-knn", "llmrec.baselines.knn:ItemKNN", ()),
        ("user-knn", "llmrec.baselines.knn:UserKNN", ()),
        ("mf", "llmrec.baselines.mf:BiasedMF", ()),
        ("bpr", "llmrec.baselines.bpr:BPRMF", ()),
        ("bpr-adam", "llmrec.baselines.mf:BPRAdam", ()),
        ("als", "llmrec.baselines.als:ALS", ()),
        ("ease", "llmrec.baselines.ease:EASE", ()),
        ("neumf", "llmrec.baselines.neumf:NeuMF", ()),
        ("sasrec", "llmrec.baselines.sasrec:SASRec", ()),
        ("kg-ppr", "llmrec.kg.ppr:KGPageRank", ("data",)),
        ("kg-path", "llmrec.kg.paths:KGPaths", ("data",)),
        ("content-lm", "llmrec.content.recommender:ContentLM", ("data", "model")),
        ("content-st", "llmrec.content.recommender:ContentST", ("data",))):
    BASELINES.register(_name, _target, settings=DERIVE, reads=_reads)


def takes_seed(name: str) -> bool:
    return "seed" in inspect.signature(BASELINES.get(name).__init__).parameters


def make(name: str, settings: Any = None, seed: int = 0, **overrides: Any) -> Recommender:
    """Build a registered model from its settings dataclass (default: its defaults), the seed (for
    models with randomness) and `overrides`: settings by name, or other constructor arguments (an
    already built graph, an encoder). A name the model does not take is an error, never ignored."""
    entry = BASELINES.entry(name)
    cls = entry.settings_class()
    fields = {f.name for f in dataclasses.fields(cls)}
    params = set(inspect.signature(entry.load().__init__).parameters) - {"self"}
    for key in overrides:
        if key not in params:
            raise ConfigError(f"baseline.{name}.{key} is not a setting of {name!r} "
                              f"(its settings: {sorted(fields) or 'none'})")
    settings = dataclasses.replace(settings if settings is not None else cls(),
                                   **{k: v for k, v in overrides.items() if k in fields})
    extra = {k: v for k, v in overrides.items() if k not in fields}
    kwargs = dataclasses.asdict(settings) | ({"seed": seed} if "seed" in params else {}) | extra
    return entry.load()(**kwargs)


def from_config(cfg: BaselineConfig) -> tuple[Recommender, dict]:
    """The configured model and the settings it runs with (its `[baseline.<name>]` table over its
    defaults, plus the seed where it has randomness). A seed set for a model without randomness
    is an error, as an unknown setting is."""
    if not takes_seed(cfg.name) and cfg.seed != 0:
        raise ConfigError(f"baseline.seed = {cfg.seed} is not a setting of {cfg.name!r} (it has no randomness); "
                          "remove it")
    settings = cfg.settings()
    model = make(cfg.name, settings, cfg.seed)
    return model, dataclasses.asdict(settings) | ({"seed": cfg.seed} if takes_seed(cfg.name) else {})


def full_valid_ndcg10(model: Recommender, data: TrainData, batch: int = 512) -> float:
    """NDCG@10 of each user's validation item(s) among all items not in their training history:
    the early-stopping signal for the trained baselines, measured after every epoch, so it works
    in the model's own precision and discounts the few training items of each user from the
    counts instead of masking a dense users x items copy (a third of the time per call). Several
    validation items (a ratio split) are ranked together: DCG over them, divided by the ideal DCG."""
    total = 0.0
    seen = data.binary.tocsr()
    held = data.valid_sets
    for start in range(0, len(data.users), batch):
        users = np.arange(start, min(start + batch, len(data.users)))
        scores = np.asarray(model.score_all(users, "valid"))
        if data.cold.any() and not getattr(model, "cold_start", False):
            scores = scores.copy()
            scores[:, data.cold] = -np.inf
        v = held[users]
        owner = np.repeat(np.arange(len(users)), np.diff(v.indptr))  # one row per (user, validation item)
        p = scores[owner, v.indices]
        rows_of = scores if len(p) == len(users) else scores[owner]  # one item each: the pairs are the users
        greater = (rows_of > p[:, None]).sum(1).astype(np.float64)
        equal = (rows_of == p[:, None]).sum(1).astype(np.float64)
        sub = seen[users] if len(p) == len(users) else seen[users[owner]]  # each pair's user's training items
        pair = np.repeat(np.arange(len(p)), np.diff(sub.indptr))
        mine = scores[owner[pair], sub.indices]  # training items never compete with a validation item
        greater -= np.bincount(pair, weights=mine > p[pair], minlength=len(p))
        equal -= np.bincount(pair, weights=mine == p[pair], minlength=len(p))
        dcg = np.bincount(owner, weights=ndcg(1.0 + greater + (equal - 1) / 2.0, 10), minlength=len(users))
        total += float((dcg / ideal_dcg(np.diff(v.indptr), 10)).sum())
    return total / len(data.users)
