"""Nonces written in batches: one pipeline per event-loop turn for every ``SET NX`` asked in it.

Each vendor request records its signature's nonce. One command per request costs a connection
checkout, a write and a read each, which under load was most of a vendor request's CPU and set
its p99; the requests waiting in one turn of the loop share one pipeline instead (not a
transaction: each ``SET NX`` stays atomic on its own, which is all a nonce needs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

MAX_BATCH = 256

Run = Callable[[Sequence[tuple[str, int]]], Awaitable[list[bool]]]


class SetNxBatcher:
    """``await batcher.set_nx(key, px)`` is True when this call created the key. ``run`` sends one
    batch and returns one result per entry, or raises (every waiter of the batch gets the error)."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._pending: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def set_nx(self, key: str, px: int) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((key, px, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # after every request already runnable in this turn has asked
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.get_running_loop().create_task(self._send(pending[start:start + MAX_BATCH]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[str, int, asyncio.Future[bool]]]) -> None:
        waiting = [entry for entry in batch if not entry[2].done()]  # a waiter may have been cancelled
        if not waiting:
            return
        try:
            results = await self._run([(key, px) for key, px, _ in waiting])
        except asyncio.CancelledError:
            for _, _, future in waiting:
                future.cancel()
            raise
        except Exception as exc:
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), created in zip(waiting, results, strict=True):
            if not future.done():
                future.set_result(created)
