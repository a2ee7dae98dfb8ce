"""The ReplayStore contract, run against every implementation available here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.auth import ReplayStore
from gateway.auth.replay import MemoryReplayStore

from .support import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory"])
def store(request: pytest.FixtureRequest, mono: FakeClock) -> Callable[..., ReplayStore]:
    def make(**kwargs: int) -> ReplayStore:
        return MemoryReplayStore(clock=mono, **kwargs)

    return make


async def test_first_seen_once_then_refused(store: Callable[..., ReplayStore]) -> None:
    replay = store()
    assert await replay.first_seen("n1", 10) is True
    assert await replay.first_seen("n1", 10) is False
    assert await replay.first_seen("n2", 10) is True


async def test_forgotten_after_the_ttl(store: Callable[..., ReplayStore], mono: FakeClock) -> None:
    replay = store()
    assert await replay.first_seen("n", 10)
    mono.advance(9.9)
    assert not await replay.first_seen("n", 10)
    mono.advance(0.2)
    assert await replay.first_seen("n", 10)
    assert not await replay.first_seen("n", 10)


async def test_concurrent_callers_see_one_winner(store: Callable[..., ReplayStore]) -> None:
    replay = store()
    results = await asyncio.gather(*(replay.first_seen("same", 10) for _ in range(50)))
    assert results.count(True) == 1


async def test_memory_store_is_bounded(mono: FakeClock) -> None:
    replay = MemoryReplayStore(max_entries=3, clock=mono)
    for nonce in "abcd":
        assert await replay.first_seen(nonce, 100)
    assert len(replay) == 3
    assert replay.evictions == 1
    assert await replay.first_seen("a", 100)  # the oldest was forgotten, and that was counted
    assert not await replay.first_seen("d", 100)


async def test_memory_store_purges_expired_entries(mono: FakeClock) -> None:
    replay = MemoryReplayStore(max_entries=1000, clock=mono)
    for i in range(500):
        await replay.first_seen(f"n{i}", 5)
    mono.advance(6)
    await replay.first_seen("fresh", 5)
    assert len(replay) == 1
    assert replay.evictions == 0


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryReplayStore(max_entries=0)
