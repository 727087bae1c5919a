"""chat-eval on a few simulated users: the report, and the baseline's first list by hand."""

import json

import numpy as np
import pytest

from llmrec.chat import evaluate
from llmrec.chat.engine import ChatEngine
from llmrec.data.split import natural_key, train_item_counts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(chat_service):
    """Requests read by the rules (the by-hand baseline reads them so); the parse rate still asks the LM."""
    from dataclasses import replace

    cfg = chat_service.cfg
    service = replace(chat_service, cfg=replace(cfg, chat=replace(cfg.chat, understand="rules")))
    return ChatEngine.from_service(service, log=lambda *_: None, db=":memory:")


def test_simulated_users(engine):
    sims, skipped = evaluate.sim_users(engine, 3)
    assert len(sims) == 3 and skipped >= 0
    u = sims[0]
    assert u.user_id == next(iter(engine.service.split)).user_id or skipped
    assert u.opening("movie") == f"I'm looking for a {u.target.genres[0].lower()} movie from the {u.target.year // 10 * 10}s."
    assert u.reveal[-1].endswith(f"from {u.target.year}.") and len(u.reveal) == len(u.target.genres)


def test_baseline_first_list_by_hand(engine):
    """filter+pop's first list: the items of the target's first genre and decade by training count
    (ties in id order), then relaxed matches; the user accepts iff the target is among them."""
    import asyncio

    from llmrec.chat.constraints import parse_rules
    from llmrec.chat.store import State

    (u,), _ = evaluate.sim_users(engine, 1)
    understood = asyncio.run(evaluate.understand_all(engine, evaluate.utterances([u], "movie", 1)))
    (accepted,) = asyncio.run(evaluate.simulate(engine, [u], "baseline", understood, turns=1))
    ds, split, k = engine.dataset, engine.service.split, engine.settings.k
    items = sorted(ds.items, key=natural_key)
    counts = dict(zip(items, train_item_counts(split, items)))
    seen = set(split.users[u.user_id].history("test"))
    decade = u.target.year // 10 * 10
    ok = [i for i in items if i not in seen and u.target.genres[0] in ds.items[i].genres
          and ds.items[i].year is not None and decade <= ds.items[i].year <= decade + 9]
    strict = sorted(ok, key=lambda i: -counts[i])[:k]  # stable sort: ties in id order
    cons = parse_rules(u.opening("movie"), engine.vocab)
    shown = [i for i, _ in engine.retrieve(State(user_id=u.user_id), cons, "", 0.0, 1.0, k)[0]]
    assert shown[:len(strict)] == strict and len(shown) == k
    assert accepted == (1 if u.target.id in shown else None)


def test_chat_eval_report(engine, tmp_path):
    report = evaluate.run(engine, 3, 2, ["baseline", "retrieval", "llm"], tmp_path, log=lambda *_: None)
    assert report["users"] == 3 and set(report["per_user"]) == {"baseline", "retrieval", "llm"}
    for row in report["systems"].values():
        assert row["success@1"] <= row["success@2"] and 1 <= row["mean_turns"] <= 2
    assert report["parse_rate"] is None  # the rules read the requests
    assert json.loads((tmp_path / "chat_eval.json").read_text())["k"] == engine.settings.k
    assert (tmp_path / "chat_eval.md").read_text().startswith("| system | success@1 | success@2 | mean turns |")
    assert np.isfinite(report["seconds"]["llm"])


def test_lm_understanding_is_measured(chat_service):
    """With chat.understand = lm every distinct request goes to the LM once; each parsed or has a reason."""
    import asyncio

    engine = ChatEngine.from_service(chat_service, log=lambda *_: None, db=":memory:")
    sims, _ = evaluate.sim_users(engine, 2)
    texts = evaluate.utterances(sims, "movie", 2)
    understood = asyncio.run(evaluate.understand_all(engine, texts))
    pr = evaluate.parse_rate(understood, engine)
    assert set(understood) == set(texts) and pr["requests"] == len(texts)
    assert pr["parsed"] + sum(pr["failures"].values()) == len(texts)
    assert all((u.by == "lm") == (u.lm_error == "") for u in understood.values())
