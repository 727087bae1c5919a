import numpy as np
import pytest

from llmrec.baselines import make
from llmrec.kg.paths import bpr_weights
from tests.kg.helpers import graph, train_data

ITEMS = ["a", "b", "c", "d", "e", "n1", "n2"]
FACTS = [("a", "director", "Lucas"), ("c", "director", "Lucas"), ("c", "director", "Kershner"),
         ("e", "director", "Kershner"),
         ("a", "genre", "SciFi"), ("b", "genre", "SciFi"), ("c", "genre", "SciFi"),
         ("a", "sequel", "n1")]  # d is in no fact


def tiny():
    # u0 watched a, b; u1 watched b, n2; validation items c and n1.
    data = train_data(["u0", "u1"], ITEMS, {"u0": ["a", "b"], "u1": ["b", "n2"]}, {"u0": "c", "u1": "n1"})
    return data, graph(ITEMS, FACTS)


def test_path_counts_by_hand():
    data, kg = tiny()
    m = make("kg-path", graph=kg, cowatched=True).fit(data)
    assert m.path_types == ["director", "genre", "sequel", "co-watched"]
    x = m.path_count_features(np.array([0]), "valid")[:, 0, :]  # u0 from {a, b}
    c, d, n1 = (ITEMS.index(i) for i in ("c", "d", "n1"))
    # to c: director a-Lucas-c (1); genre a-SciFi-c, b-SciFi-c (2); no sequel; co-watched: nobody watched c.
    assert x[:, c].tolist() == [1, 2, 0, 0]
    # to n1: a -sequel- n1 (an item-item fact); to d: nothing in the KG, and nobody else watched d.
    assert x[:, n1].tolist() == [0, 0, 1, 0] and x[:, d].tolist() == [0, 0, 0, 0]
    # co-watched to n2: b <- u1 -> n2 (1 path).
    assert x[3, ITEMS.index("n2")] == 1
    # score = sum_t w_t log(1 + count_t)
    m.weights = np.array([2.0, 0.5, 1.0, 3.0])
    s = m.score_all(np.array([0]), "valid")[0]
    assert s[c] == pytest.approx(2.0 * np.log(2) + 0.5 * np.log(3))
    assert s[d] == 0.0  # an item without KG facts (and no co-watcher) gets zero features: score 0
    assert s[ITEMS.index("n2")] == pytest.approx(3.0 * np.log(2))
    # Test stage: the history gains the validation item c, and with it c -Kershner- e.
    e = ITEMS.index("e")
    assert x[:, e].tolist() == [0, 0, 0, 0]
    assert m.path_count_features(np.array([0]), "test")[:, 0, e].tolist() == [1, 0, 0, 0]


def test_bpr_weights_closed_form():
    # One feature, every positive ahead by 1: the loss is log(1 + e^-w) + lam/2 w^2, so at the optimum
    # lam w = sigmoid(-w); for lam = 0.1: w = 1.6335 (0.16335 = 1 / (1 + e^1.6335) = 1 / 6.121).
    w = bpr_weights(np.ones((10, 1)), 0.1)[0]
    assert 0.1 * w == pytest.approx(1 / (1 + np.exp(w)), abs=1e-5)
    assert w == pytest.approx(1.6335, abs=1e-3)


def test_learned_weights_favour_the_informative_relation():
    # 8 clusters of 5 items: "studio" names the cluster, "tag" is random. Each user watches three
    # items of one cluster; the validation item is a fourth of the same cluster, so only "studio"
    # paths predict it.
    rng = np.random.default_rng(0)
    items = [f"i{k}" for k in range(40)]
    facts = [(i, "studio", f"s{k // 5}") for k, i in enumerate(items)]
    facts += [(i, "tag", f"t{rng.integers(8)}") for i in items]
    users = [f"u{k}" for k in range(80)]
    train, valid = {}, {}
    for k, u in enumerate(users):
        picks = rng.permutation(5)[:4] + 5 * (k % 8)
        train[u] = [items[p] for p in picks[:3]]
        valid[u] = items[picks[3]]
    data = train_data(users, items, train, valid)
    m = make("kg-path", graph=graph(items, facts), cowatched=False, negatives=10, weight_decay=1e-3).fit(data)
    w = m.relation_weights()
    assert set(w) == {"studio", "tag"}
    assert w["studio"] > 2.0 and abs(w["tag"]) < 0.2 * w["studio"]
