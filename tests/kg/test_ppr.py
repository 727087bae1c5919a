import numpy as np
import pytest

from llmrec.baselines import make, score_candidates
from llmrec.errors import ConfigError
from tests.kg.helpers import graph, train_data


def chain():
    # u0 - a - e - c: u0 watched a (training); the KG says a and c share entity e; c is u0's validation item.
    data = train_data(["u0"], ["a", "c"], {"u0": ["a"]}, {"u0": "c"})
    return data, graph(["a", "c"], [("a", "director", "e"), ("c", "director", "e")])


def test_pagerank_by_hand():
    data, kg = chain()
    ppr = make("kg-ppr", alpha=0.5, epochs=200, graph=kg).fit(data)
    # Restart at a (stage valid: the training items), alpha = 1 - beta = 0.5, degrees u0 1, a 2, e 2, c 1:
    #   r_u = beta r_a / 2,  r_a = alpha + beta (r_u + r_e / 2),  r_e = beta (r_a / 2 + r_c),  r_c = beta r_e / 2
    # -> r_u = r_a / 4, r_c = r_e / 4, r_e = 2 r_a / 7, r_a (1 - 1/8 - 1/14) = 1/2: r_a = 28/45, r_c = 2/45.
    assert ppr.score_all(np.array([0]), "valid")[0] == pytest.approx([28 / 45, 2 / 45])
    # Test stage: the walk restarts at a and the validation item c (1/2 each); closed form
    # r = alpha (I - beta P)^-1 s over nodes (u0, a, c, e).
    p = ppr.transition.toarray()
    s = np.array([0, 0.5, 0.5, 0])
    exact = 0.5 * np.linalg.solve(np.eye(4) - 0.5 * p, s)
    assert exact.sum() == pytest.approx(1.0)
    assert ppr.score_all(np.array([0]), "test")[0] == pytest.approx(exact[1:3])
    assert exact[2] > 2 / 45  # the validation item is a restart node only for the test target


def test_power_iteration_error_shrinks_with_epochs():
    data, kg = chain()
    few = make("kg-ppr", alpha=0.5, epochs=3, graph=kg).fit(data).score_all(np.array([0]), "valid")[0]
    many = make("kg-ppr", alpha=0.5, epochs=60, graph=kg).fit(data).score_all(np.array([0]), "valid")[0]
    assert abs(few[0] - 28 / 45) > 1e-3 and abs(many[0] - 28 / 45) < 1e-12


def test_items_without_kg_link_are_reached_through_interactions():
    # u0 watched a, b; u1 watched b, d. Only a is in the KG (with x, which shares a's genre).
    items = ["a", "b", "d", "x", "z"]
    data = train_data(["u0", "u1"], items, {"u0": ["a", "b"], "u1": ["b", "d"]}, {"u0": "d", "u1": "x"})
    kg = graph(items, [("a", "genre", "g"), ("x", "genre", "g")])
    assert kg.linked_items().tolist() == [True, False, False, True, False]
    ppr = make("kg-ppr", graph=kg).fit(data)
    s = ppr.score_all(np.array([0]), "valid")[0][[2, 3, 4]]  # the walk starts at a and b
    assert s[0] > 0  # d: no KG fact, reached via b - u1 - d
    assert s[1] > 0  # x: never watched, reached via a - g - x
    assert s[2] == 0.0  # z: neither watched nor in the KG
    # The batch gives each user's own walk: scoring both users at once equals one at a time.
    both = ppr.score_all(np.array([0, 1]), "test")
    assert both[1] == pytest.approx(ppr.score_all(np.array([1]), "test")[0])
    assert not np.allclose(both[0], both[1])  # test-stage restarts: {a, b, d} and {b, d, x}
    assert score_candidates(ppr, data, "u0", ["z", "nope"]).tolist() == [0.0, -np.inf]


def test_restart_probability_must_be_a_probability():
    with pytest.raises(ConfigError, match=r"baseline.kg-ppr.alpha \(restart probability\) must be in \(0, 1\); got 1.0"):
        make("kg-ppr", alpha=1.0)
