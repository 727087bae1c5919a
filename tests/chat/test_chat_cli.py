"""`llmrec chat` in the terminal: a request, feedback by number, the session kept in SQLite."""

import os
import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_terminal_chat(prepared, tmp_path):
    db = tmp_path / "chat.sqlite"
    r = subprocess.run([sys.executable, "-m", "llmrec.cli", "chat", "--user", "5", "--db", str(db),
                        f"out_dir={prepared.out_dir}", "chat.understand=rules", "chat.reply=facts", "chat.k=3",
                        "chat.retrieve=6"],
                       input="a thriller from the 1990s\nlike 1\nlike 9\n\n", capture_output=True, text=True,
                       timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("Here are 3 movies") == 2 and "(Thriller; from 1990-1999)" in r.stdout
    assert "like 9: the last list has items 1-3" in r.stderr  # a bad turn is reported, the chat goes on
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT user_id FROM sessions").fetchall() == [("5",)]
        assert [t for (t,) in con.execute("SELECT turn FROM turns ORDER BY turn")] == [1, 2]
