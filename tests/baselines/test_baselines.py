import numpy as np
import pytest
import scipy.sparse as sp

from llmrec.baselines import TrainData, full_valid_ndcg10, make, score_candidates
from llmrec.baselines.knn import cosine_topk


def hand_data():
    # users x items: u0 {0,1}, u1 {0,1,2}, u2 {2,3}
    m = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float32))
    return TrainData(["u0", "u1", "u2"], ["a", "b", "c", "d"], {"u0": 0, "u1": 1, "u2": 2},
                     {"a": 0, "b": 1, "c": 2, "d": 3}, m, m, np.array([2, 3, 0]),
                     [np.array([0, 1]), np.array([0, 1, 2]), np.array([2, 3])])


def test_item_knn_by_hand():
    d = hand_data()
    knn = make("item-knn", neighbours=10, shrink=0.0).fit(d)
    # cos(a,c) = 1/(sqrt2*sqrt2) = 0.5; cos(b,c) = 0.5; cos(d,c) = 1/sqrt2; cos(a,b) = 1
    sim = knn.sim.toarray()
    assert sim[0, 1] == pytest.approx(1.0) and sim[0, 2] == pytest.approx(0.5)
    assert sim[3, 2] == pytest.approx(1 / np.sqrt(2)) and sim[0, 3] == 0.0 and sim[0, 0] == 0.0
    # u0's history {a, b}: score(c) = 0.5 + 0.5, score(d) = 0
    assert score_candidates(knn, d, "u0", ["c", "d"]).tolist() == pytest.approx([1.0, 0.0])
    shrunk = make("item-knn", neighbours=10, shrink=2.0).fit(d)
    assert shrunk.sim.toarray()[0, 2] == pytest.approx(1 / (2 + 2))  # dot / (|a||c| + shrink)
    top1 = make("item-knn", neighbours=1, shrink=0.0).fit(d)
    assert (top1.sim.toarray() > 0).sum(1).tolist() == [1, 1, 1, 1]


def test_user_knn_by_hand():
    d = hand_data()
    knn = make("user-knn", neighbours=10, shrink=0.0).fit(d)
    # cos(u0,u1) = 2/(sqrt2*sqrt3); cos(u0,u2) = 0 -> u0's score for c comes from u1 only
    s = score_candidates(knn, d, "u0", ["c", "d"])
    assert s.tolist() == pytest.approx([2 / np.sqrt(6), 0.0])
    assert cosine_topk(d.binary, 0.0, 1).toarray()[1].nonzero()[0].tolist() == [0]


def test_popularity_and_unknown_items():
    d = hand_data()
    pop = make("pop").fit(d)
    assert score_candidates(pop, d, "u2", ["a", "c", "d", "zzz"]).tolist() == [2.0, 2.0, 1.0, -np.inf]


def test_bpr_beats_popularity_and_mf_learns_ratings(ml100k_split):
    data = TrainData.from_split(ml100k_split)
    pop = full_valid_ndcg10(make("pop").fit(data), data)
    bpr = make("bpr", seed=0).fit(data)
    assert bpr.history[bpr.best_epoch - 1] == max(bpr.history)  # best epoch's parameters kept
    assert full_valid_ndcg10(bpr, data) == pytest.approx(max(bpr.history))
    assert max(bpr.history) > 1.5 * pop
    mf = make("mf", seed=0, epochs=10, patience=10, unrated=0).fit(data)
    # Rating MF predicts held-out validation ratings better than the global mean, and ranks below popularity;
    # with unrated items fitted to 0 (the default) it learns which items a user rates and ranks above it.
    assert full_valid_ndcg10(mf, data) < pop
    assert max(make("mf", seed=0, epochs=8).fit(data).history) > 1.3 * pop
    users = np.arange(len(data.users))
    pred = mf.score_all(users)[users, data.valid]
    truth = np.array([s.ratings[-2] for s in ml100k_split])
    assert np.sqrt(np.mean((pred - truth) ** 2)) < np.sqrt(np.mean((truth.mean() - truth) ** 2))
    again = make("bpr", seed=0, epochs=3).fit(data)
    assert again.history == make("bpr", seed=0, epochs=3).fit(data).history  # seeded
    eager = make("bpr", seed=0, epochs=40, patience=1, min_epochs=0).fit(data)
    assert len(eager.history) < 40  # stops at the first epoch without a gain
    patient = make("bpr", seed=0, epochs=40, patience=1, min_epochs=30).fit(data)
    assert len(patient.history) >= 30 and patient.history[:len(eager.history)] == eager.history
    adam = make("bpr-adam", seed=0, epochs=3).fit(data)  # the earlier torch BPR, kept for its figures
    assert len(adam.history) == 3 and adam.history == make("bpr-adam", seed=0, epochs=3).fit(data).history
    assert adam.history[-1] > adam.history[0]  # learning


def test_settings_meant_for_another_model_are_errors():
    from llmrec.baselines import from_config
    from llmrec.config import load_config
    from llmrec.errors import ConfigError

    def cfg(*overrides):
        return load_config(None, list(overrides)).baseline

    model, settings = from_config(cfg("baseline.name=item-knn", "baseline.item-knn.neighbours=7"))
    assert settings == {"neighbours": 7, "shrink": 10.0} and model.neighbours == 7
    with pytest.raises(ConfigError, match=r"unknown config key 'baseline.bpr.neighbours'; known keys: \["
                                          "'embedding_size', 'epochs', 'learning_rate', 'min_epochs'"):
        cfg("baseline.bpr.neighbours=50")
    with pytest.raises(ConfigError, match=r"baseline.seed = 3 is not a setting of 'pop' \(it has no randomness\)"):
        from_config(cfg("baseline.name=pop", "baseline.seed=3"))
    with pytest.raises(ConfigError, match=r"baseline.bpr.shrink is not a setting of 'bpr'"):
        make("bpr", shrink=1.0)
