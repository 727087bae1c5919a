"""A bounded load test on loopback: 20 concurrent sessions x 5 turns against one server.

No error, no lost turn (each turn stored in SQLite exactly once, numbered 1..5), p50/p95 printed.
Understanding by rules and reasons from facts, so the test times the loop and the reranking
batch queue rather than text generation (scripts/bench_serve.py --chat times the full loop).
"""

import asyncio
import sqlite3
import time

import httpx
import numpy as np
import pytest

from tests.chat.conftest import chat_server

pytestmark = pytest.mark.slow
SESSIONS, TURNS = 20, 5
TEXTS = ["a {genre} movie from the 90s", "like 1", "dislike 2 and something older", "more like 1", "no horror"]
GENRES = ["comedy", "drama", "thriller", "romance", "action"]


async def one_session(client: httpx.AsyncClient, k: int, latencies: list[float]) -> str:
    r = await client.post("/v1/chat/sessions", json={"user_id": str(k + 1)} if k % 2 else {})
    r.raise_for_status()
    sid = r.json()["session_id"]
    for n, text in enumerate(TEXTS[:TURNS], 1):
        t0 = time.perf_counter()
        r = await client.post(f"/v1/chat/sessions/{sid}/turns", json={"text": text.format(genre=GENRES[k % 5])})
        latencies.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
        assert r.json()["turn"] == n and r.json()["items"]
    return sid


def test_concurrent_sessions(chat_service, tmp_path):
    db = tmp_path / "chat.sqlite"
    srv, _ = chat_server(chat_service, db, understand="rules", reply="facts")
    latencies: list[float] = []

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=300) as client:
            return await asyncio.gather(*(one_session(client, k, latencies) for k in range(SESSIONS)))

    with srv:
        t0 = time.perf_counter()
        sids = asyncio.run(run())
        wall = time.perf_counter() - t0
        batches = httpx.get(srv.url + "/health").json()["batches"]
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT session_id, turn FROM turns").fetchall()
    assert sorted(rows) == sorted((s, n) for s in sids for n in range(1, TURNS + 1))
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"\nchat load: {SESSIONS} sessions x {TURNS} turns in {wall:.1f} s; turn latency p50 {p50:.2f} s, "
          f"p95 {p95:.2f} s; rerank batches {batches}")
