"""Chat sessions on disk: SQLite (stdlib `sqlite3`), one file, so a restarted server continues a
session where it was.

Tables: `sessions` (id, user_id, created, the session's state as JSON), `turns` (one row per
turn: the text, the constraints understood and by what, the reply), `recommendations` (the items
a turn showed, with score and reason) and `feedback` (like / dislike per item and turn). A turn,
its recommendations, its feedback and the new session state are written in one transaction, and
`(session_id, turn)` is the turns table's primary key: a turn is stored once or not at all.
The database runs in WAL mode so readers (GET a session) do not wait for a writing turn. A file
that SQLite cannot open as a database is a `DataError` naming it, not a traceback.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, user_id TEXT, created REAL NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS turns (
  session_id TEXT NOT NULL REFERENCES sessions(id), turn INTEGER NOT NULL, text TEXT NOT NULL,
  constraints TEXT NOT NULL, understood_by TEXT NOT NULL, lm_error TEXT NOT NULL, reply TEXT NOT NULL,
  seconds REAL NOT NULL, created REAL NOT NULL, PRIMARY KEY (session_id, turn));
CREATE TABLE IF NOT EXISTS recommendations (
  session_id TEXT NOT NULL, turn INTEGER NOT NULL, position INTEGER NOT NULL, item_id TEXT NOT NULL,
  score REAL, reason TEXT NOT NULL, reason_by TEXT NOT NULL, PRIMARY KEY (session_id, turn, position));
CREATE TABLE IF NOT EXISTS feedback (
  session_id TEXT NOT NULL, turn INTEGER NOT NULL, item_id TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (session_id, turn, item_id));
"""


@dataclass
class State:
    """What a session remembers between turns."""

    user_id: str | None = None
    turns: int = 0
    constraints: dict[str, Any] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # the free-text requests, oldest first
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)  # every item shown so far
    last: list[str] = field(default_factory=list)  # the latest list, numbered 1.. in feedback

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Recommended:
    item_id: str
    title: str
    score: float | None
    reason: str
    reason_by: str  # "lm": generated; "facts": built from the item's genres, year and the likes


@dataclass(frozen=True)
class Turn:
    turn: int
    text: str
    constraints: dict[str, Any]
    understood_by: str  # "lm", "rules" or "none" (feedback only)
    lm_error: str  # why the LM's answer did not parse ("" when it did or was not asked)
    reply: str
    items: tuple[Recommended, ...]
    feedback: dict[str, str]  # item id -> like | dislike, given in this turn
    seconds: float


class Store:
    """One SQLite file shared by the server's requests (a lock serialises writes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        try:  # sqlite3 opens lazily: a file that is not a database fails at the first statement
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:  # OperationalError (a folder, no permission) included
            raise DataError(f"{self.path}: cannot open it as a SQLite database of chat sessions ({e}); "
                            "give chat.db (--db) a new file or one written by llmrec") from None

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def create(self, user_id: str | None) -> tuple[str, State]:
        sid = uuid.uuid4().hex
        state = State(user_id=user_id)
        with self.lock:
            self.db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (sid, user_id, time.time(), state.to_json()))
        return sid, state

    def state(self, session_id: str) -> State | None:
        with self.lock:
            row = self.db.execute("SELECT state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return State.from_json(row[0]) if row else None

    def save_turn(self, session_id: str, state: State, turn: Turn) -> None:
        """The turn, its items and feedback, and the new state, in one transaction."""
        assert turn.turn == state.turns
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (session_id, turn.turn, turn.text, json.dumps(turn.constraints), turn.understood_by,
                                 turn.lm_error, turn.reply, turn.seconds, time.time()))
                self.db.executemany("INSERT INTO recommendations VALUES (?, ?, ?, ?, ?, ?, ?)",
                                    [(session_id, turn.turn, k, r.item_id, r.score, r.reason, r.reason_by)
                                     for k, r in enumerate(turn.items, 1)])
                self.db.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?)",
                                    [(session_id, turn.turn, i, v) for i, v in turn.feedback.items()])
                self.db.execute("UPDATE sessions SET state = ? WHERE id = ?", (state.to_json(), session_id))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def turns(self, session_id: str, titles: dict[str, str] | None = None) -> list[Turn]:
        titles = titles or {}
        with self.lock:
            rows = self.db.execute("SELECT turn, text, constraints, understood_by, lm_error, reply, seconds FROM turns "
                                   "WHERE session_id = ? ORDER BY turn", (session_id,)).fetchall()
            recs = self.db.execute("SELECT turn, item_id, score, reason, reason_by FROM recommendations "
                                   "WHERE session_id = ? ORDER BY turn, position", (session_id,)).fetchall()
            fb = self.db.execute("SELECT turn, item_id, value FROM feedback WHERE session_id = ?",
                                 (session_id,)).fetchall()
        items: dict[int, list[Recommended]] = {}
        for t, i, s, reason, by in recs:
            items.setdefault(t, []).append(Recommended(i, titles.get(i, i), s, reason, by))
        feedback: dict[int, dict[str, str]] = {}
        for t, i, v in fb:
            feedback.setdefault(t, {})[i] = v
        return [Turn(t, text, json.loads(c), by, err, reply, tuple(items.get(t, ())), feedback.get(t, {}), sec)
                for t, text, c, by, err, reply, sec in rows]

    def count_turns(self, session_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Turn rows per session (a load test's no-lost-turn check)."""
        with self.lock:
            rows = self.db.execute("SELECT session_id, COUNT(*) FROM turns GROUP BY session_id").fetchall()
        counts = dict(rows)
        return {s: counts.get(s, 0) for s in session_ids} if session_ids is not None else counts
