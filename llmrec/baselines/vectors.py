"""Learned user and item vectors of a baseline run, in one format every consumer reads.

`vectors.npz` in a baseline run directory (numpy's zip of arrays, no pickles):

    user_ids       (n_users,)  str    row order of user_vectors
    item_ids       (n_items,)  str    row order of item_vectors and item_bias
    user_vectors   (n_users, d) float32
    item_vectors   (n_items, d) float32
    item_bias      (n_items,)  float32  added to the dot product (zeros when the model has none)
    model          ()          str    the baseline's name
    exact          ()          bool   whether the dot product below is the model's score
    valid_user_vectors (n_users, d) float32, optional: the user vectors that score the validation
                   item, where they differ from `user_vectors` (sequence models)

For bpr, mf, als and sasrec (`exact`), the model's score of item i for user u is
`user_vectors[u] @ item_vectors[i] + item_bias[i]` (SASRec's user vector is its sequence
representation after the user's whole history, the one that scores the test item), so a consumer
such as a collaborative-token projector sees exactly the geometry the model ranks with. NeuMF
saves its [GMF | MLP] embeddings; it scores through an MLP, so for it `exact` is false.
SASRec also saves `valid_user_vectors` (the representation after the training items only), so a
consumer trained on validation targets never sees a user vector that has read its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrec.errors import DataError

FILENAME = "vectors.npz"
KEYS = ("user_ids", "item_ids", "user_vectors", "item_vectors", "item_bias", "model", "exact")


@dataclass(frozen=True)
class Vectors:
    model: str
    user_ids: list[str]
    item_ids: list[str]
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    item_bias: np.ndarray
    exact: bool = True
    valid_user_vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        assert self.user_vectors.shape == (len(self.user_ids), self.item_vectors.shape[1])
        assert self.item_vectors.shape[0] == len(self.item_ids) == len(self.item_bias)
        assert self.valid_user_vectors is None or self.valid_user_vectors.shape == self.user_vectors.shape

    def users_at(self, stage: str) -> np.ndarray:
        """The user vectors that score the `stage` (test | valid) target."""
        return self.valid_user_vectors if stage == "valid" and self.valid_user_vectors is not None else self.user_vectors

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for user rows `users`, as the model ranks them."""
        return self.user_vectors[users] @ self.item_vectors.T + self.item_bias[None, :]

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / FILENAME
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, model=np.array(self.model), exact=np.array(self.exact), user_ids=np.array(self.user_ids, dtype=str),
                 item_ids=np.array(self.item_ids, dtype=str),
                 user_vectors=self.user_vectors.astype(np.float32), item_vectors=self.item_vectors.astype(np.float32),
                 item_bias=self.item_bias.astype(np.float32),
                 **({} if self.valid_user_vectors is None
                    else {"valid_user_vectors": self.valid_user_vectors.astype(np.float32)}))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, run_dir: Path) -> Vectors:
        path = Path(run_dir) / FILENAME if Path(run_dir).is_dir() else Path(run_dir)
        if not path.is_file():
            raise DataError(f"{path}: no saved vectors (`llmrec baseline` writes them for bpr, mf, als, neumf "
                            "and sasrec runs)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in KEYS if k not in z.files]
                if missing:
                    raise DataError(f"{path}: not a vectors file (missing {missing})")
                valid = z["valid_user_vectors"] if "valid_user_vectors" in z.files else None
                return cls(str(z["model"]), [str(x) for x in z["user_ids"]], [str(x) for x in z["item_ids"]],
                           z["user_vectors"], z["item_vectors"], z["item_bias"], bool(z["exact"]), valid)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable vectors file ({e})") from None
