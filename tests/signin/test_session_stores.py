"""One contract for both session stores (the session sealed in the cookie; the session in a real
Redis), then what only Redis gives: a revocation every replica sees at once."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.auth.cookies import SessionKeys
from gateway.auth.session_redis import RedisSessionStore
from gateway.auth.sessions import COOKIE, CookieSessionStore, Session, SessionInvalid, SessionReason, SessionStore
from gateway.errors import Unavailable
from gateway.redis.client import Breaker, SharedRedis
from gateway.redis.options import RedisOptions
from tests.support import RedisServer, start_redis, stop_redis

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    stop_redis(server)


def new_session(**overrides: object) -> Session:
    now = int(time.time())
    values: dict[str, object] = {"sid": secrets.token_urlsafe(32), "issuer": "corp", "subject": "ada",
                                 "email": "ada@acme.test", "groups": ("ml-team",), "created": now,
                                 "expires": now + 3600, "seen": now}
    values.update(overrides)
    return Session(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["cookie", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    keys = SessionKeys([os.urandom(32)])
    if request.param == "cookie":
        yield CookieSessionStore(keys)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    shared = SharedRedis(server.url, prefix=f"t{secrets.token_hex(4)}:")
    try:
        yield RedisSessionStore(keys, shared)
    finally:
        await shared.aclose()


async def test_an_issued_session_loads_back_and_holds_no_token(store: SessionStore) -> None:
    session = new_session()
    value = await store.issue(session)
    loaded = await store.load(value)
    assert loaded == session and loaded.principal.method == "browser_session"
    assert loaded.principal is (await store.load(value)).principal  # one principal per session (policy memo)
    assert len(COOKIE) + 1 + len(value) < 1536


async def test_revoked_is_refused(store: SessionStore) -> None:
    session = new_session()
    value = await store.issue(session)
    await store.revoke(session)
    with pytest.raises(SessionInvalid) as info:
        await store.load(value)
    assert info.value.reason is SessionReason.REVOKED


async def test_touch_moves_the_idle_clock(store: SessionStore) -> None:
    session = new_session(seen=int(time.time()) - 600)
    value = await store.issue(session)
    renewed = await store.touch(session, session.seen + 600)
    # The cookie store hands out a new cookie; Redis keeps the cookie and updates the record.
    current = renewed if renewed is not None else value
    assert (await store.load(current)).seen == session.seen + 600
    assert (renewed is None) is store.shared


async def test_garbage_is_refused_not_raised(store: SessionStore) -> None:
    for junk in ("", "x", "A" * 100, "AQ" + "A" * 60):
        with pytest.raises(SessionInvalid):
            await store.load(junk)


async def test_with_redis_a_logout_on_one_replica_is_refused_by_another(redis_server: RedisServer) -> None:
    keys = SessionKeys([os.urandom(32)])
    prefix = f"t{secrets.token_hex(4)}:"
    one, two = SharedRedis(redis_server.url, prefix=prefix), SharedRedis(redis_server.url, prefix=prefix)
    try:
        first, second = RedisSessionStore(keys, one), RedisSessionStore(keys, two)
        session = new_session()
        value = await first.issue(session)
        assert (await second.load(value)).sid == session.sid
        # Redis holds neither the cookie nor the session id nor the user in the clear.
        [stored_key] = await one.client.keys(prefix + "*")
        stored = await one.client.get(stored_key)
        assert session.sid.encode() not in stored_key and value.encode() not in stored_key
        assert b"ada" not in stored and session.sid.encode() not in stored
        await second.revoke(session)
        with pytest.raises(SessionInvalid):
            await first.load(value)  # at once, although the first replica had the cookie cached
        await first.touch(session, session.seen + 10)  # a late touch never brings it back (SET XX)
        with pytest.raises(SessionInvalid):
            await second.load(value)
        assert await one.client.keys(prefix + "*") == []
    finally:
        await one.aclose()
        await two.aclose()


async def test_while_redis_is_down_sessions_are_unavailable_not_accepted() -> None:
    keys = SessionKeys([os.urandom(32)])
    down = SharedRedis("redis://127.0.0.1:1/0", breaker=Breaker(threshold=1, backoff=60),
                       options=RedisOptions(connect_timeout=0.05, timeout=0.05))
    try:
        store = RedisSessionStore(keys, down)
        with pytest.raises(Unavailable):
            await store.issue(new_session())
        value = keys.seal(COOKIE, b'{"s": "some-session-id"}')
        with pytest.raises(Unavailable):
            await store.load(value)
    finally:
        await down.aclose()
