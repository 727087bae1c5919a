"""Every classic model on a small real split: it learns, is seeded, and saves vectors that reproduce its scores."""

import numpy as np
import pytest

from llmrec.baselines import TrainData, full_valid_ndcg10, make
from llmrec.baselines.vectors import Vectors
from llmrec.data.split import Split
from llmrec.errors import DataError

pytestmark = pytest.mark.slow  # real ML-100K users, trained models

FAST = {  # a few epochs each: enough to learn, small enough for CI
    "bpr": {"epochs": 15},
    "mf": {"epochs": 5},
    "als": {"epochs": 8},
    "ease": {},
    "neumf": {"epochs": 12, "batch_size": 2048},
    "sasrec": {"epochs": 8, "max_len": 20, "batch_size": 64},
}
SEEDED = ("bpr", "als", "neumf", "sasrec")


@pytest.fixture(scope="module")
def small(ml100k_split):
    """The first 300 ML-100K users: a real but small split."""
    users = dict(list(ml100k_split.users.items())[:300])
    return TrainData.from_split(Split(users, ml100k_split.dataset_hash))


@pytest.fixture(scope="module")
def fitted(small):
    return {name: make(name, **kw).fit(small) for name, kw in FAST.items() if name != "mf"}


@pytest.mark.parametrize("name", ["bpr", "als", "ease", "neumf", "sasrec"])
def test_model_beats_popularity(name, small, fitted):
    pop = full_valid_ndcg10(make("pop").fit(small), small)
    ndcg = full_valid_ndcg10(fitted[name], small)
    assert ndcg > pop * 1.05, f"{name}: validation NDCG@10 {ndcg:.4f} vs popularity {pop:.4f}"


@pytest.mark.parametrize("name", SEEDED)
def test_deterministic_per_seed(name, small, fitted):
    users = np.arange(20)
    again = make(name, **FAST[name]).fit(small)
    np.testing.assert_array_equal(again.score_all(users), fitted[name].score_all(users))
    other = make(name, seed=1, **FAST[name]).fit(small)
    assert not np.allclose(other.score_all(users), fitted[name].score_all(users))


@pytest.mark.parametrize("name", ["bpr", "als", "sasrec", "neumf"])
def test_vectors_round_trip_and_reproduce_scores(name, small, fitted, tmp_path):
    model = fitted[name]
    vec = model.vectors()
    vec.save(tmp_path)
    back = Vectors.load(tmp_path)
    assert back.model == name and back.user_ids == small.users and back.item_ids == small.items
    np.testing.assert_array_equal(back.user_vectors, vec.user_vectors.astype(np.float32))
    users = np.arange(25)
    if name == "neumf":  # scores through its MLP: the vectors are its embeddings, not a dot-product model
        assert not back.exact and back.user_vectors.shape[1] == 2 * model.embedding_size
    else:
        assert back.exact
        np.testing.assert_allclose(back.scores(users), model.score_all(users, "test"), rtol=1e-4, atol=1e-4)
        # the validation-stage user vectors reproduce the validation scores (SASRec saves its own)
        assert (back.valid_user_vectors is not None) == (name == "sasrec")
        valid = back.users_at("valid")[users] @ back.item_vectors.T + back.item_bias
        np.testing.assert_allclose(valid, model.score_all(users, "valid"), rtol=1e-4, atol=1e-4)


def test_sasrec_reads_the_history_before_the_target(small, fitted):
    m = fitted["sasrec"]
    valid, test = m.score_all(np.arange(5), "valid"), m.score_all(np.arange(5), "test")
    assert not np.allclose(valid, test)  # the validation item is part of the test-time history
    assert list(small.history(0, "test")) == [*small.sequences[0], small.valid[0]]


def test_no_vectors_and_bad_files(small, fitted, tmp_path):
    assert fitted["ease"].vectors() is None and make("pop").fit(small).vectors() is None
    with pytest.raises(DataError, match="no saved vectors"):
        Vectors.load(tmp_path)
    (tmp_path / "vectors.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="unreadable vectors file"):
        Vectors.load(tmp_path)
