"""`llmrec serve` killed mid-session (SIGKILL) and started again on the same SQLite file: the
session continues where it was (turn numbers, likes, what was shown)."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.chat.conftest import CHAT
from tests.serve.conftest import SERVE

pytestmark = pytest.mark.slow


def start(prepared, db, log):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "llmrec.cli", "serve", "--port", str(port), f"out_dir={prepared.out_dir}", *SERVE,
            *CHAT, "chat.understand=rules", "chat.reply=facts", f"chat.db={db}", "split.history_len=5"]
    proc = subprocess.Popen(args, stdout=open(log, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            httpx.get(url + "/health", timeout=5).raise_for_status()
            return proc, url
        except httpx.TransportError:
            assert time.time() < deadline, "the server did not come up"
            time.sleep(0.3)


def test_killed_server_continues_the_session(prepared, tmp_path):
    db, log = tmp_path / "chat.sqlite", tmp_path / "serve.log"
    proc, url = start(prepared, db, log)
    try:
        sid = httpx.post(url + "/v1/chat/sessions", json={"user_id": "3"}).json()["session_id"]
        t1 = httpx.post(f"{url}/v1/chat/sessions/{sid}/turns", json={"text": "a 90s thriller"}, timeout=300).json()
        t2 = httpx.post(f"{url}/v1/chat/sessions/{sid}/turns", json={"text": "like 1"}, timeout=300).json()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    proc, url = start(prepared, db, log)
    try:
        s = httpx.get(f"{url}/v1/chat/sessions/{sid}").json()
        assert [t["turn"] for t in s["turns"]] == [1, 2] and s["liked"] == [t1["items"][0]["item_id"]]
        assert s["turns"][1]["items"] == t2["items"]
        t3 = httpx.post(f"{url}/v1/chat/sessions/{sid}/turns", json={"text": "more like 2"}, timeout=300).json()
        assert t3["turn"] == 3 and t3["feedback"] == {t2["items"][1]["item_id"]: "like"}
        assert t3["constraints"]["genres"] == ["Thriller"] and t3["constraints"]["year_min"] == 1990
        shown = {i["item_id"] for t in (t1, t2) for i in t["items"]}
        assert not shown & {i["item_id"] for i in t3["items"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
