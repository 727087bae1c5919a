"""The batch queue on a fake scorer: concurrent queries share calls, each gets its own result."""

import asyncio
import threading
import time

import pytest

from llmrec.service.batching import BatchQueue, QueueFull


class SlowScorer:
    """Doubles its inputs, taking `seconds` per call; records batch sizes and the calling threads."""

    def __init__(self, seconds=0.05, bad=None):
        self.seconds, self.bad = seconds, bad
        self.sizes, self.threads = [], set()

    def __call__(self, batch):
        self.sizes.append(len(batch))
        self.threads.add(threading.get_ident())
        time.sleep(self.seconds)
        if self.bad is not None and self.bad in batch:
            raise ValueError(f"cannot score {self.bad}")
        return [2 * x for x in batch]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_queries_are_batched_and_answered_each():
    scorer = SlowScorer()

    async def main():
        queue = BatchQueue(scorer, max_batch=4, max_wait_ms=20)
        results = await asyncio.gather(*(queue.submit(x) for x in range(10)))
        sizes = dict(queue.batch_sizes)
        await queue.close()
        return results, sizes

    results, sizes = run(main())
    assert results == [2 * x for x in range(10)]
    assert sum(scorer.sizes) == 10 and max(scorer.sizes) == 4 and len(scorer.sizes) == 3  # 4 + 4 + 2
    assert sizes == {4: 2, 2: 1}
    assert len(scorer.threads) == 1 and threading.get_ident() not in scorer.threads  # one worker thread


def test_max_batch_one_scores_one_at_a_time():
    scorer = SlowScorer(seconds=0.01)

    async def main():
        queue = BatchQueue(scorer, max_batch=1, max_wait_ms=20)
        out = await asyncio.gather(*(queue.submit(x) for x in range(5)))
        await queue.close()
        return out

    assert run(main()) == [0, 2, 4, 6, 8] and scorer.sizes == [1] * 5


def test_a_lone_query_waits_at_most_max_wait():
    scorer = SlowScorer(seconds=0)

    async def main():
        queue = BatchQueue(scorer, max_batch=8, max_wait_ms=30)
        started = time.perf_counter()
        out = await queue.submit(21)
        waited = time.perf_counter() - started
        await queue.close()
        return out, waited

    out, waited = run(main())
    assert out == 42 and 0.025 <= waited < 1.0 and scorer.sizes == [1]


def test_a_failing_query_fails_alone():
    scorer = SlowScorer(seconds=0.01, bad=3)

    async def main():
        queue = BatchQueue(scorer, max_batch=8, max_wait_ms=20)
        out = await asyncio.gather(*(queue.submit(x) for x in range(6)), return_exceptions=True)
        await queue.close()
        return out

    out = run(main())
    assert [o for k, o in enumerate(out) if k != 3] == [0, 2, 4, 8, 10]
    assert isinstance(out[3], ValueError) and "cannot score 3" in str(out[3])


def test_a_full_queue_refuses():
    scorer = SlowScorer(seconds=0.2)

    async def main():
        queue = BatchQueue(scorer, max_batch=1, max_wait_ms=0, max_queue=2)
        first = asyncio.ensure_future(queue.submit(0))
        await asyncio.sleep(0.05)  # 0 is being scored; the queue is empty again
        waiting = [asyncio.ensure_future(queue.submit(x)) for x in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="serve.max_queue = 2"):
            await queue.submit(3)
        assert queue.depth == 2 and queue.in_flight == 1
        out = await asyncio.gather(first, *waiting)
        await queue.close()
        return out

    assert run(main()) == [0, 2, 4]
