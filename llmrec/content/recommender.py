"""`content-lm` and `content-st`: content-based recommenders behind the baselines' interface.

Fitted like any baseline (`llmrec baseline --name content-lm`): the catalogue's texts are
encoded once (cached), the user interest model is chosen or trained on the training split, and
`score_all` scores every item for any user, so the recipe scores the same candidate files, full
ranking and retrieval as for the collaborative models. Choices made on the validation items are
kept in `selected` (the run's `run.json`): the pooling of `content-lm` with `pooling = "auto"`
(mean or last token, whichever gives the higher validation NDCG@10 with mean interest), the
recency half-life, and for attention its validation NDCG@10 before training.

Items are scored from their text alone (`cold_start = True`), so on a cold-start split the
held-out items keep their scores where collaborative models fall back to -inf.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from llmrec.baselines import TrainData, full_valid_ndcg10
from llmrec.baselines.vectors import Vectors
from llmrec.config import DataConfig, ModelConfig
from llmrec.content import cache
from llmrec.content.attention import Examples, TargetAttention, pad_histories
from llmrec.content.encoders import Encoder, LMEncoder, STEncoder
from llmrec.content.index import ItemIndex
from llmrec.content.interest import HALF_LIVES, interest_vectors
from llmrec.content.text import DEFAULT_TEMPLATE, item_texts, load_item_template
from llmrec.data.dataset import Item
from llmrec.errors import ConfigError, DataError

INTERESTS = ("mean", "recency", "attention")


class _Content:
    name = "content"
    cold_start = True  # scores items from their text: held-out items keep their scores
    # Vectors of a text encoder share one large direction (for a causal LM especially: Ethayarajh
    # 2019), which drowns what tells items apart; subtracting the catalogue's mean before
    # normalising lifts validation NDCG@10 of mean interest from 0.002-0.003 to 0.019 (content-lm)
    # and from 0.006 to 0.024 (content-st) on ML-100K.
    center = True

    def __init__(self, interest: str = "attention", embedding_size: int = 64, max_len: int = 50, epochs: int = 50,
                 learning_rate: float = 3e-3, batch_size: int = 512, negatives: int = 4, patience: int = 3,
                 seed: int = 0, template: str = DEFAULT_TEMPLATE, cache_dir: str = "",
                 encoder: Encoder | None = None) -> None:
        if interest not in INTERESTS:
            raise ConfigError(f"{self.name}: baseline.{self.name}.interest must be one of {list(INTERESTS)}; got {interest!r}")
        if min(embedding_size, max_len, epochs, batch_size, negatives, patience) < 1 or not learning_rate > 0:
            raise ConfigError(f"{self.name}: embedding_size, max_len, epochs, batch_size, negatives and patience "
                              "must be >= 1, learning_rate > 0")
        self.interest, self.embedding_size, self.max_len, self.epochs = interest, embedding_size, max_len, epochs
        self.learning_rate, self.batch_size, self.negatives, self.patience = learning_rate, batch_size, negatives, patience
        self.seed, self.template = seed, template
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.encoder = encoder
        self.items: dict[str, Item] | None = None
        self.item_noun = DataConfig().item_noun
        self.selected: dict = {}
        self.history: list[float] = []
        self.data: TrainData | None = None
        self.item_vectors: np.ndarray | None = None
        self.index: ItemIndex | None = None
        self.half_life: float | None = None
        self.net: TargetAttention | None = None

    # -- side data -----------------------------------------------------------------------------
    def use_data(self, data: DataConfig) -> None:
        """Read the catalogue's items from the configured dataset (the recipe calls this)."""
        from llmrec.data.loaders import load_dataset

        ds = load_dataset(data, log=lambda *_: None)
        self.use_items(ds.items, data.item_noun)

    def use_items(self, items: dict[str, Item], item_noun: str = "movie") -> None:
        self.items, self.item_noun = items, item_noun

    def _encoder(self) -> Encoder:
        raise NotImplementedError

    def _log(self, text: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)

    def encode(self, data: TrainData) -> dict[str, np.ndarray]:
        """Pooling -> vectors of `data.items` (rows in its order), from the cache or encoded."""
        if self.items is None:
            raise DataError(f"{self.name}: no item texts (call use_data or use_items before fit)")
        missing = [i for i in data.items if i not in self.items]
        if missing:
            raise DataError(f"{self.name}: {len(missing)} items of the split are not in the items file "
                            f"(e.g. {missing[:3]}); their text is unknown")
        template = load_item_template(self.template)
        ids = list(self.items)
        texts = item_texts(template, self.items.values(), self.item_noun)
        self.encoder = self.encoder or self._encoder()
        vectors = cache.load_or_encode(self.encoder, template, ids, texts, self.cache_dir, log=self._log)
        rows = [{i: k for k, i in enumerate(ids)}[i] for i in data.items]
        if self.center:
            vectors = {p: v - v.mean(0) for p, v in vectors.items()}
        return {p: v[rows] for p, v in vectors.items()}

    # -- fitting -------------------------------------------------------------------------------
    def _set_vectors(self, vectors: np.ndarray) -> None:
        self.item_vectors = vectors
        self.index = ItemIndex(vectors)

    def _choose_pooling(self, data: TrainData, pools: dict[str, np.ndarray]) -> str:
        if len(pools) == 1:
            return next(iter(pools))
        interest, self.interest, self.half_life = self.interest, "mean", None
        by = {}
        for p, v in pools.items():
            self._set_vectors(v)
            by[p] = round(full_valid_ndcg10(self, data), 5)
        self.interest = interest
        self.selected["valid_ndcg10_by_pooling"] = by
        return max(by, key=by.get)

    def fit(self, data: TrainData) -> _Content:
        self.data = data
        self.selected = {}
        pools = self.encode(data)
        pooling = getattr(self, "pooling", "auto")
        if pooling == "auto":
            pooling = self._choose_pooling(data, pools)
        self.selected["pooling"] = pooling
        self._set_vectors(pools[pooling])
        if self.interest == "recency":
            by = {}
            for h in HALF_LIVES:
                self.half_life = h
                by[h] = round(full_valid_ndcg10(self, data), 5)
            self.half_life = max(by, key=by.get)
            self.selected.update(half_life=self.half_life, valid_ndcg10_by_half_life=by)
        elif self.interest == "attention":
            self._fit_attention(data)
        self._log(f"{self.name}: {self.selected}")
        return self

    def _fit_attention(self, data: TrainData) -> None:
        from llmrec.baselines.training import fit_early_stopped, seeded

        examples = Examples(data, self.max_len)
        with seeded(self.seed):
            self.net = TargetAttention(self.item_vectors, self.embedding_size, self.max_len).eval()
            self.selected["start_valid_ndcg10"] = round(full_valid_ndcg10(self, data), 5)
            fit_early_stopped(self, data, self.net,
                              lambda rng: examples.bpr_losses(self.net, rng, self.batch_size, self.negatives),
                              epochs=self.epochs, learning_rate=self.learning_rate, patience=self.patience,
                              seed=self.seed)
        self.selected["best_valid_ndcg10"] = round(max(self.history), 5)

    # -- scoring -------------------------------------------------------------------------------
    def _histories(self, users: np.ndarray, stage: str) -> list[np.ndarray]:
        assert self.data is not None, "fit first"
        return [self.data.history(int(u), stage) for u in users]

    def user_vectors(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        """The pooled interest vector (mean or recency-weighted) of each user before the `stage` target."""
        assert self.item_vectors is not None, "fit first"
        return interest_vectors(self.item_vectors, self._histories(users, stage), self.half_life)

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        assert self.index is not None, "fit first"
        if self.interest != "attention" or self.net is None:
            return self.index.scores(self.user_vectors(users, stage))  # cosine, through the faiss index
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(users), 128):
                hist = pad_histories(self._histories(users[s:s + 128], stage), self.max_len, self.net.pad)
                out.append(self.net.score_all(hist).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.index)), dtype=np.float32)

    def top_k(self, users: np.ndarray, k: int, stage: str = "test") -> list[list[str]]:
        """The k items nearest to each user's interest vector that are not in their history
        (faiss retrieval over the whole catalogue; the cosine interest models' ranking)."""
        assert self.data is not None and self.index is not None, "fit first"
        histories = self._histories(users, stage)
        _, rows = self.index.top_k(self.user_vectors(users, stage), k + max(map(len, histories), default=0))
        return [[self.data.items[r] for r in row if r not in set(h)][:k] for row, h in zip(rows, histories)]

    def vectors(self) -> Vectors:
        """Unit item vectors and pooled user vectors; the dot product is the score (`exact`) for
        mean and recency interest, not for attention, whose user vector depends on the candidate."""
        assert self.data is not None and self.index is not None, "fit first"
        users = np.arange(len(self.data.users))
        return Vectors(self.name, self.data.users, self.data.items, self.user_vectors(users, "test"),
                       self.index.vectors, np.zeros(len(self.data.items), dtype=np.float32),
                       exact=self.interest != "attention", valid_user_vectors=self.user_vectors(users, "valid"))


class ContentLM(_Content):
    """Item vectors from the configured causal LM (`[model]`: name and LoRA adapter)."""

    name = "content-lm"

    def __init__(self, interest: str = "attention", pooling: str = "auto", embedding_size: int = 64, max_len: int = 50,
                 epochs: int = 50, learning_rate: float = 3e-3, batch_size: int = 512, negatives: int = 4,
                 patience: int = 3, seed: int = 0, template: str = DEFAULT_TEMPLATE,
                 cache_dir: str = "", encoder: Encoder | None = None) -> None:
        if pooling not in ("auto", *LMEncoder.poolings):
            raise ConfigError(f"content-lm: baseline.content-lm.pooling must be auto, mean or last; got {pooling!r}")
        super().__init__(interest, embedding_size, max_len, epochs, learning_rate, batch_size, negatives, patience,
                         seed, template, cache_dir, encoder)
        self.pooling = pooling
        self.model = ModelConfig()

    def use_model(self, model: ModelConfig) -> None:
        """The LM (and adapter) that encodes the items (the recipe calls this with `[model]`)."""
        self.model = model

    def _encoder(self) -> Encoder:
        m = self.model
        return LMEncoder(m.name, m.adapter, m.device, m.dtype)


class ContentST(_Content):
    """Item vectors from the embedded sentence encoder (all-MiniLM-L6-v2)."""

    name = "content-st"

    def _encoder(self) -> Encoder:
        return STEncoder()
