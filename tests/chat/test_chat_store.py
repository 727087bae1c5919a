"""Sessions in SQLite: a turn is stored once with its items, feedback and the new state; a new
connection (a restarted server) reads the session back."""

import sqlite3

import pytest

from llmrec.chat.store import Recommended, State, Store, Turn
from llmrec.errors import DataError


def turn(n: int, items=("1", "2")) -> Turn:
    return Turn(n, f"request {n}", {"genres": ["Comedy"]}, "rules", "", "reply",
                tuple(Recommended(i, f"title {i}", 0.5, "why", "facts") for i in items), {"9": "like"} if n > 1 else {},
                0.1)


def test_round_trip_and_restart(tmp_path):
    db = tmp_path / "chat.sqlite"
    store = Store(db)
    sid, state = store.create("7")
    for n in (1, 2):
        state.turns = n
        state.liked = ["9"] if n > 1 else []
        store.save_turn(sid, state, turn(n))
    store.close()
    again = Store(db)
    s = again.state(sid)
    assert s == State(user_id="7", turns=2, liked=["9"])
    turns = again.turns(sid, {"1": "Toy Story"})
    assert [t.turn for t in turns] == [1, 2] and turns[0].items[0].title == "Toy Story"
    assert turns[1].feedback == {"9": "like"} and turns[0].constraints == {"genres": ["Comedy"]}
    assert again.count_turns([sid, "other"]) == {sid: 2, "other": 0}
    assert again.state("nope") is None


def test_a_turn_is_stored_once(tmp_path):
    store = Store(tmp_path / "chat.sqlite")
    sid, state = store.create(None)
    state.turns = 1
    store.save_turn(sid, state, turn(1))
    with pytest.raises(sqlite3.IntegrityError):
        store.save_turn(sid, state, turn(1, items=("3",)))
    # the failed turn left nothing behind: same items, same state
    assert [r.item_id for r in store.turns(sid)[0].items] == ["1", "2"] and store.state(sid).turns == 1


def test_a_file_that_is_not_sqlite_is_a_data_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, just text " * 20)
    with pytest.raises(DataError, match=r"notes.txt: cannot open it as a SQLite database .*file is not a database"):
        Store(notes)
    with pytest.raises(DataError, match=r"unable to open database file"):
        Store(tmp_path)  # a folder
    assert notes.read_text().startswith("not a database")  # left as it was
