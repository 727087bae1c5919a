"""content-lm / content-st as recommenders: interest models learn, cold items are scored, the recipe runs them."""

import json

import numpy as np
import pytest
import torch

from llmrec.baselines import from_config, full_valid_ndcg10, make, score_candidates, scores_of
from llmrec.config import load_config
from llmrec.content.index import ItemIndex, normalise
from llmrec.content.interest import interest_vectors, recency_weights
from llmrec.data.split import hold_out_items
from llmrec.errors import ConfigError
from tests.content.helpers import WordsEncoder, first_users


def content(tmp_path, ml100k, **settings):
    model = make("content-st", encoder=WordsEncoder(), cache_dir=str(tmp_path), **settings)
    model.use_items(ml100k.items)
    return model


@pytest.fixture(scope="module")
def small(ml100k_split):
    return first_users(ml100k_split, 300)


def test_pooled_interest_and_faiss_index():
    assert recency_weights(3, None).tolist() == pytest.approx([1 / 3] * 3)
    assert recency_weights(3, 1.0).tolist() == pytest.approx([1 / 7, 2 / 7, 4 / 7])  # most recent last
    rng = np.random.default_rng(0)
    items, users = rng.normal(size=(40, 8)), rng.normal(size=(5, 8))
    index = ItemIndex(items)
    np.testing.assert_allclose(index.scores(users), normalise(users) @ normalise(items).T, atol=1e-5)
    sims, rows = index.top_k(users, 3)
    assert (rows[:, 0] == (normalise(users) @ normalise(items).T).argmax(1)).all() and (np.diff(sims) <= 0).all()
    u = interest_vectors(items, [np.array([3]), np.array([1, 2])], None)
    np.testing.assert_allclose(u[0], normalise(items)[3], atol=1e-6)


def test_settings_are_checked():
    model, settings = from_config(load_config(None, ["baseline.name=content-lm", "baseline.content-lm.interest=recency",
                                                     "baseline.content-lm.pooling=last"]).baseline)
    assert settings["interest"] == "recency" and settings["pooling"] == "last" and model.name == "content-lm"
    with pytest.raises(ConfigError, match="unknown config key 'baseline.content-st.pooling'"):
        load_config(None, ["baseline.name=content-st", "baseline.content-st.pooling=mean"])
    with pytest.raises(ConfigError, match="baseline.content-st.interest must be one of"):
        make("content-st", interest="max")


@pytest.mark.slow
def test_attention_learns_and_beats_pooling(small, ml100k, tmp_path):
    mean = content(tmp_path, ml100k, interest="mean").fit(small)
    recency = content(tmp_path, ml100k, interest="recency").fit(small)
    attention = content(tmp_path, ml100k, interest="attention", epochs=6, patience=6,
                        learning_rate=3e-3).fit(small)
    floor = 10 / len(small.items)  # about what a random ranking of the unseen items gives at most
    start, best = attention.selected["start_valid_ndcg10"], full_valid_ndcg10(attention, small)
    assert best == pytest.approx(max(attention.history)) and attention.best_epoch >= 2
    assert best > 2 * start, (start, best)  # training improves on the initial (uniform-attention) model
    assert best > 1.5 * full_valid_ndcg10(mean, small) and best > full_valid_ndcg10(recency, small)
    assert full_valid_ndcg10(mean, small) > floor
    # seeded: the same run twice gives the same scores. On one thread, so that no kernel's float
    # summation order depends on how a loaded machine schedules its threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = content(tmp_path, ml100k, interest="attention", epochs=2, patience=2, learning_rate=3e-3).fit(small)
        same = content(tmp_path, ml100k, interest="attention", epochs=2, patience=2, learning_rate=3e-3).fit(small)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(again.score_all(np.arange(5)), same.score_all(np.arange(5)), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def cold_small(ml100k_split):
    return first_users(hold_out_items(ml100k_split, 0.1, seed=0), 300)


@pytest.mark.parametrize("interest", ["mean", "attention"])
def test_content_scores_cold_items_where_collaborative_models_fall_back(interest, cold_small, ml100k, tmp_path):
    data = cold_small
    assert data.cold.sum() > 5
    model = content(tmp_path, ml100k, interest=interest, epochs=1, patience=1).fit(data)
    users = np.arange(len(data.users))
    scores = scores_of(model, data, users)
    cold = scores[:, data.cold]
    assert np.isfinite(cold).all() and cold.std() > 0 and np.unique(cold[0]).size == data.cold.sum()
    pop, bpr = make("pop").fit(data), make("bpr", epochs=1).fit(data)
    for m in (pop, bpr):
        s = scores_of(m, data, users)
        assert (s[:, data.cold] == -np.inf).all() and np.isfinite(s[:, ~data.cold]).all()
    u = 0
    target = data.items[np.flatnonzero(data.cold)[0]]
    cands = [target, data.items[data.sequences[u][0]], "no-such-item"]
    assert np.isfinite(score_candidates(model, data, data.users[u], cands)[:2]).all()
    assert score_candidates(bpr, data, data.users[u], cands)[[0, 2]].tolist() == [-np.inf, -np.inf]


@pytest.mark.slow
def test_baseline_recipe_on_a_cold_folder(tmp_path, ml100k, monkeypatch):
    """`llmrec baseline` runs content-st on the cold candidates (popularity gives every cold target rank 20)."""
    from llmrec.content.recommender import ContentST
    from llmrec.recipes import baseline, prepare

    monkeypatch.setattr(ContentST, "_encoder", lambda self: WordsEncoder())
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))  # the vector cache
    cfg = load_config("scripts/configs/ml100k.toml", [f"out_dir={tmp_path / 'cold'}", "candidates.kinds=['sampled']",
                                                      "split.cold_items=0.1"])
    prepare.run(cfg, log=lambda *_: None)
    runs = {}
    for name in ("pop", "content-st"):
        c = load_config(None, [f"out_dir={tmp_path / 'cold'}", f"baseline.name={json.dumps(name)}",
                               "baseline.candidates=['sampled-20-cold.test', 'sampled-20-warm.test']"]
                        + (["baseline.content-st.interest=\"recency\""] if name != "pop" else []))
        runs[name] = baseline.run(c, log=lambda *_: None)
    ranks = {n: [json.loads(x)["rank"] for x in (r.run_dirs[0] / "ranks.jsonl").read_text().splitlines()]
             for n, r in runs.items()}
    assert set(ranks["pop"]) == {20}  # the cold target is below every warm negative
    assert min(ranks["content-st"]) < 10 and runs["content-st"].metrics["sampled-20-cold.test"]["NDCG@10"] > 0.1
    assert runs["content-st"].metrics["sampled-20-warm.test"]["NDCG@10"] > 0.3
    run = json.loads((runs["content-st"].run_dirs[0] / "run.json").read_text())
    assert run["settings"]["interest"] == "recency" and "half_life" in run["selected"]
