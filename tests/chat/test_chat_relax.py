"""The reply names the relaxation the shown items needed, not the last one retrieval tried.

ML-100K, anonymous sessions (retrieval order, no reranking), requests read by the rules, reasons
from facts; 4 items shown out of 30 retrieved:
- "an action western from the 1950s": 1 item has both genres in the 1950s, 5 more have one of
  them, so the 4 shown needed "any of the genres"; retrieval then relaxed the years as well to
  fill its 30.
- "a film noir from the 1960s": 2 in the 1960s, 22 more from other years, so the 4 shown needed
  "any year"; retrieval went on to any genre.
"""

import asyncio
from dataclasses import replace

import pytest

from llmrec.chat.constraints import Constraints
from llmrec.chat.engine import TIER, ChatEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(chat_service):
    cfg = chat_service.cfg
    chat = replace(cfg.chat, understand="rules", reply="facts", k=4, retrieve=30)
    return ChatEngine.from_service(replace(chat_service, cfg=replace(cfg, chat=chat)), log=lambda *_: None,
                                   db=":memory:")


def tiers(engine, text: str) -> list[int]:
    """Constraint tier of every retrieved item (4: all constraints .. 1: any genre), best first."""
    from llmrec.chat.constraints import parse_rules
    from llmrec.chat.store import State

    found, _ = engine.retrieve(State(), parse_rules(text, engine.vocab), text)
    return [int(s // TIER) for _, s in found]


@pytest.mark.parametrize("text, shown_tiers, lowest_tier, needed", [
    ("an action western from the 1950s", [4, 3, 3, 3], 2, "any of the genres"),
    ("a film noir from the 1960s", [4, 4, 2, 2], 1, "any year"),
])
def test_the_reply_names_what_the_shown_items_needed(engine, text, shown_tiers, lowest_tier, needed):
    t = tiers(engine, text)
    assert t[:4] == shown_tiers and min(t) == lowest_tier  # retrieval relaxed further than the shown items
    sid, _ = engine.create_session(None)
    turn = asyncio.run(engine.turn(sid, text))
    assert len(turn.items) == 4
    assert turn.reply.startswith(f"Nothing left matched everything, so I allowed {needed}. Here are 4 movies")
    items = [engine.dataset.items[r.item_id] for r in turn.items]
    cons = Constraints.from_dict(turn.constraints)
    if needed == "any year":  # every shown item has the genre; some are outside the years
        assert all(set(cons.genres) <= set(it.genres) for it in items)
        assert not all(cons.year_min <= it.year <= cons.year_max for it in items)
    else:  # every shown item is from the years; some lack one of the genres
        assert all(cons.year_min <= it.year <= cons.year_max for it in items)
        assert not all(set(cons.genres) <= set(it.genres) for it in items)


def test_relaxed_for_names_each_constraint_a_row_breaks(engine):
    cat = engine.catalogue
    cons = Constraints(genres=("Action", "Western"), year_min=1950, year_max=1959)
    items = engine.dataset.items
    assert "Action" in items["50"].genres and "Western" not in items["50"].genres and items["50"].year == 1977
    assert not {"Action", "Western"} & set(items["1"].genres) and items["1"].year == 1995
    star_wars, toy_story = cat.row["50"], cat.row["1"]
    assert engine._relaxed_for(cons, []) == ""
    assert engine._relaxed_for(cons, [star_wars]) == "any of the genres and any year"
    assert engine._relaxed_for(cons, [star_wars, toy_story]) == "any genre and any year"
