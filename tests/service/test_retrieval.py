"""The first stage of /v1/recommend: popularity and a baseline run's vectors, history excluded."""

import json

import numpy as np
import pytest

from llmrec.baselines.vectors import Vectors
from llmrec.data.split import train_item_counts
from llmrec.errors import ConfigError
from llmrec.service.retrieval import PopularityRetriever, VectorsRetriever, make_retriever


def test_popularity_is_training_counts_without_the_history(ml100k, ml100k_split):
    pop = make_retriever("pop", ml100k_split, ml100k)
    assert isinstance(pop, PopularityRetriever)
    items = list(ml100k.items)
    counts = dict(zip(items, train_item_counts(ml100k_split, items)))
    top = pop.retrieve(None, [], 10)
    assert [c for _, c in top] == sorted(counts.values(), reverse=True)[:10]
    assert all(counts[i] == c for i, c in top)
    history = [top[0][0], top[3][0]]
    again = pop.retrieve("1", history, 10)
    assert len(again) == 10 and not set(history) & {i for i, _ in again}
    assert [i for i, _ in again][:2] == [top[1][0], top[2][0]]


def test_vectors_score_a_known_user_and_fold_in_a_history(ml100k, ml100k_split, ml100k_vectors):
    vec = Vectors.load(ml100k_vectors)
    r = make_retriever(str(ml100k_vectors), ml100k_split, ml100k)
    assert isinstance(r, VectorsRetriever) and r.name == "bpr"
    u = vec.user_ids.index("7")
    history = list(ml100k_split["7"].history("test"))
    got = r.retrieve("7", history, 5)
    scores = vec.scores(np.array([u]))[0].astype(np.float64)
    scores[[vec.item_ids.index(i) for i in history]] = -np.inf
    best = np.argsort(-scores, kind="stable")[:5]
    assert [i for i, _ in got] == [vec.item_ids[k] for k in best]
    np.testing.assert_allclose([s for _, s in got], scores[best], rtol=1e-6)
    # an unknown user: the mean of the history's item vectors stands in for the user vector
    rows = [vec.item_ids.index(i) for i in ["1", "2"]]
    anon = vec.item_vectors[rows].mean(0) @ vec.item_vectors.T + vec.item_bias
    anon[rows] = -np.inf
    assert [i for i, _ in r.retrieve(None, ["1", "2"], 3)] == [vec.item_ids[k] for k in np.argsort(-anon)[:3]]
    assert r.retrieve("no-such-user", ["not-an-item"], 3) == []


def test_retriever_settings_are_checked(ml100k, ml100k_split, ml100k_vectors, tmp_path):
    with pytest.raises(ConfigError, match="serve.retriever: 'nowhere' is neither 'pop' nor an existing"):
        make_retriever("nowhere", ml100k_split, ml100k)
    vec = Vectors.load(ml100k_vectors)
    inexact = tmp_path / "neumf"
    inexact.mkdir()
    Vectors("neumf", vec.user_ids, vec.item_ids, vec.user_vectors, vec.item_vectors, vec.item_bias, False).save(inexact)
    with pytest.raises(ConfigError, match="neumf vectors whose dot product is not the model's score"):
        make_retriever(str(inexact), ml100k_split, ml100k)
    other = tmp_path / "bpr-elsewhere"
    other.mkdir()
    vec.save(other)
    (other / "run.json").write_text(json.dumps({"settings": {"dataset_hash": "0123456789abcdef"}}))
    with pytest.raises(ConfigError, match="was fitted on other data"):
        make_retriever(str(other), ml100k_split, ml100k)
