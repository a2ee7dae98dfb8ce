from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import RedisServer, gateway_server, start_redis, stop_redis

__all__ = ["gateway_server"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    stop_redis(server)
