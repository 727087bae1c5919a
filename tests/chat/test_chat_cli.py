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


@pytest.mark.parametrize("flag, words", [
    ("--db", "cannot open it as a SQLite database of chat sessions (file is not a database)"),
    ("--session", "session_id: unknown session 'no-such-session'"),
])
def test_chat_errors_are_one_line(prepared, tmp_path, capsys, flag, words):
    """A --db that is not SQLite and an unknown --session: `llmrec: error: ...` and code 2, no traceback."""
    from llmrec import cli

    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, just text " * 20)
    args = ["--db", str(notes)] if flag == "--db" else ["--db", str(tmp_path / "chat.sqlite"), "--session",
                                                         "no-such-session"]
    assert cli.main(["chat", *args, f"out_dir={prepared.out_dir}", "chat.understand=rules", "chat.reply=facts"]) == 2
    err = capsys.readouterr().err  # the model's loading notes, then the error
    last = err.strip().splitlines()[-1]
    assert last.startswith("llmrec: error: ") and words in last and "Traceback" not in err, err
    if flag == "--db":
        assert last.startswith(f"llmrec: error: {notes}: ")
