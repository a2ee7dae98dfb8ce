"""Nonces asked in one loop turn share one pipeline, and every caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.redis.batch import MAX_BATCH, SetNxBatcher


class Recorder:
    """A stand-in for the pipeline: remembers the batches and answers SET NX like Redis would."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.seen: set[str] = set()
        self.fail: Exception | None = None

    async def run(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        self.batches.append([key for key, _ in items])
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        created = []
        for key, _ in items:
            created.append(key not in self.seen)
            self.seen.add(key)
        return created


def test_one_turn_is_one_batch_and_answers_keep_their_order() -> None:
    async def body() -> None:
        recorder = Recorder()
        batcher = SetNxBatcher(recorder.run)
        keys = [f"n{i % 7}" for i in range(20)]  # repeats within the batch: only the first is new
        results = await asyncio.gather(*(batcher.set_nx(key, 1000) for key in keys))
        assert recorder.batches == [keys]
        assert results == [i < 7 for i in range(20)]
        assert await batcher.set_nx("n1", 1000) is False  # a later turn: its own batch
        assert len(recorder.batches) == 2

    asyncio.run(body())


def test_large_turns_are_split_and_errors_reach_every_caller_of_their_batch() -> None:
    async def body() -> None:
        recorder = Recorder()
        batcher = SetNxBatcher(recorder.run)
        await asyncio.gather(*(batcher.set_nx(f"k{i}", 1) for i in range(MAX_BATCH + 3)))
        assert [len(b) for b in recorder.batches] == [MAX_BATCH, 3]
        recorder.fail = ConnectionError("redis went away")
        results = await asyncio.gather(*(batcher.set_nx(f"x{i}", 1) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)

    asyncio.run(body())


def test_a_cancelled_caller_does_not_break_the_others() -> None:
    async def body() -> None:
        recorder = Recorder()
        batcher = SetNxBatcher(recorder.run)
        tasks = [asyncio.create_task(batcher.set_nx(f"c{i}", 1)) for i in range(3)]
        await asyncio.sleep(0)  # every caller has asked; the flush is scheduled
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert done[0] is True and done[2] is True
        assert isinstance(done[1], asyncio.CancelledError)
        assert recorder.batches == [["c0", "c2"]]  # the cancelled one was not sent

    asyncio.run(body())


def test_the_real_store_answers_each_caller_of_a_pipeline(private_redis: object) -> None:
    from gateway.redis.client import SharedRedis

    async def body() -> None:
        shared = SharedRedis(private_redis.url)  # type: ignore[attr-defined]
        try:
            keys = [f"batch-test:{i}" for i in range(50)] * 2
            created = await asyncio.gather(*(shared.set_nx(key, 5000) for key in keys))
            assert created == [True] * 50 + [False] * 50
            assert await shared.client.pttl("batch-test:0") > 4000
        finally:
            await shared.aclose()

    asyncio.run(body())
