"""One model instance behind a queue that batches concurrent requests (dynamic batching).

Requests put their query on an asyncio queue and await a future. A single collector task takes
the first waiting query, then up to `max_batch - 1` more, waiting at most `max_wait_ms` for them,
and hands the batch to one worker thread, which calls `score(batch)` once: the backend batches
the users of that call into shared forwards, as the batch job does with `rank.batch_users`. While
the thread scores, new requests queue up and form the next batch, so the batch size follows the
load: one query when a request comes alone, up to `max_batch` under concurrency.

Only the worker thread ever calls `score`, so a ranker that is not thread-safe (its tokenizer, its
per-item caches) is safe here. A batch that fails is retried query by query, so one bad query
fails only its own request.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")


class QueueFull(Exception):
    """More queries are waiting than the queue holds (`serve.max_queue`): refuse, don't pile up."""


class BatchQueue(Generic[Q, R]):
    """`await queue.submit(query)` returns `score([..., query, ...])`'s result for that query.

    Create it inside the running event loop (the server's startup) and `await close()` at shutdown.
    `batch_sizes` counts the batches by size (what /health reports and the tests check).
    """

    def __init__(self, score: Callable[[list[Q]], Sequence[R]], max_batch: int = 8, max_wait_ms: float = 5.0,
                 max_queue: int = 256) -> None:
        assert max_batch >= 1 and max_wait_ms >= 0 and max_queue >= 1
        self.score = score
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.batch_sizes: Counter[int] = Counter()
        self._current: list[tuple[Q, asyncio.Future[R]]] = []  # the batch being scored now
        self._queue: asyncio.Queue[tuple[Q, asyncio.Future[R]]] = asyncio.Queue()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmrec-scorer")
        self._collector = asyncio.get_running_loop().create_task(self._collect(), name="llmrec-batcher")
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Queries in the batch being scored now."""
        return len(self._current)

    @property
    def depth(self) -> int:
        """Queries waiting for a batch (not counting the one being scored)."""
        return self._queue.qsize()

    async def submit(self, query: Q) -> R:
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} queries are waiting (serve.max_queue = {self.max_queue})")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((query, future))
        return await future

    async def _next_batch(self) -> list[tuple[Q, asyncio.Future[R]]]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return [(q, f) for q, f in batch if not f.done()]  # a client that left: not scored

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            self._current = batch
            try:
                outcomes = await loop.run_in_executor(self._worker, self._score_batch, [q for q, _ in batch])
            finally:
                self._current = []
            for (_, future), (ok, value) in zip(batch, outcomes):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _score_batch(self, queries: list[Q]) -> list[tuple[bool, Any]]:
        """In the worker thread: one `score` call for the batch; on failure, one call per query."""
        with self._lock:
            self.batch_sizes[len(queries)] += 1
        try:
            results = list(self.score(queries))
            assert len(results) == len(queries)
            return [(True, r) for r in results]
        except Exception as e:  # noqa: BLE001 - handed to the requests' futures
            if len(queries) == 1:
                return [(False, e)]
        outcomes: list[tuple[bool, Any]] = []
        for q in queries:
            try:
                outcomes.append((True, self.score([q])[0]))
            except Exception as e:  # noqa: BLE001 - handed to this request's future
                outcomes.append((False, e))
        return outcomes

    async def close(self) -> None:
        """Stop taking batches, fail the queries still waiting, and let the worker finish."""
        self._collector.cancel()
        try:
            await self._collector
        except asyncio.CancelledError:
            pass
        waiting = list(self._current)
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for _, future in waiting:
            if not future.done():
                future.set_exception(QueueFull("the server is shutting down"))
        self._worker.shutdown(wait=True)
