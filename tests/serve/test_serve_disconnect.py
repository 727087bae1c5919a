"""A request whose client disconnects while it waits in the batch queue is dropped, not scored.

The served `Service` (the prepared data, the real routes and queue) gets a stand-in ranker whose
first call waits on a gate, so a second request queues up behind it; that client gives up (httpx
timeout, the connection closes), and only the live requests ever reach `score`.
"""

import asyncio
import threading
import time
from dataclasses import replace

import httpx
import numpy as np
import pytest

from llmrec.scoring.rank import Scored
from tests.serve.conftest import ThreadServer

pytestmark = pytest.mark.slow


class GatedRanker:
    """Scores every candidate 0; a call waits until `release` is set. Records each query's candidates."""

    backend = None

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.scored: list[list[str]] = []

    def score(self, queries):
        self.scored.extend(list(q.candidates) for q in queries)
        self.entered.set()
        assert self.release.wait(60)
        return [Scored(q.user_id, list(q.candidates), np.zeros(len(q.candidates)), 0, 1) for q in queries]

    def close(self) -> None:
        pass


def test_a_disconnected_request_is_never_scored(service):
    from llmrec.serve.app import create_app

    ranker = GatedRanker()
    gated = replace(service, ranker=ranker, queue=None)

    def body(candidate: str) -> dict:
        return {"history": ["5", "7"], "candidates": [candidate]}

    def waiting_futures():
        return [f for _, f in list(gated.queue._queue._queue)]  # what the collector takes next

    async def main(url: str):
        async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
            live = asyncio.create_task(ac.post("/v1/rank", json=body("1")))
            assert await asyncio.to_thread(ranker.entered.wait, 60)  # "1" is being scored: the worker is busy
            with pytest.raises(httpx.ReadTimeout):  # "2" waits in the queue; its client gives up
                await ac.post("/v1/rank", json=body("2"), timeout=0.5)
            deadline = time.time() + 5  # the server sees the connection close (the test checks below)
            while not all(f.done() for f in waiting_futures()) and time.time() < deadline:
                await asyncio.sleep(0.02)
            assert gated.queue.depth == 1  # still queued, but its future is cancelled
            ranker.release.set()
            first = await live
            later = await ac.post("/v1/rank", json=body("3"))
            return first, later

    with ThreadServer(create_app(gated)) as server:
        first, later = asyncio.run(main(server.url))
    assert first.status_code == 200 and first.json()["ranking"] == ["1"]
    assert later.status_code == 200 and later.json()["scores"] == [0.0]
    assert ranker.scored == [["1"], ["3"]]  # "2" never reached the ranker
    assert sum(n * k for n, k in gated.queue.batch_sizes.items()) == 2
