"""What only the in-process replay store does: its bound, its purge, its arguments.

The ReplayStore contract itself (a nonce is first seen once, by one of many concurrent callers, and
forgotten after its TTL) is one suite, run against this store and every Redis topology, in
tests/redis/test_contracts.py."""

from __future__ import annotations

import pytest

from gateway.auth.replay import MemoryReplayStore

from .support import FakeClock

pytestmark = pytest.mark.anyio


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
