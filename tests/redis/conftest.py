"""Fixtures for the Redis tests. Every Redis here is a private redis-server on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis.procs import RedisHolder


@pytest.fixture
def private_redis() -> Iterator[RedisHolder]:
    """A redis-server of this test's own, which the test may kill and restart on the same port."""
    holder = RedisHolder()
    try:
        yield holder
    finally:
        holder.stop()
