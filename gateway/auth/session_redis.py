"""Browser sessions in Redis, shared by every replica: a logout on one is refused by all at once."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import orjson

from gateway.auth.cookies import SealError, SessionKeys
from gateway.auth.sessions import (
    COOKIE,
    DecryptedCache,
    Session,
    SessionInvalid,
    SessionReason,
    open_cookie,
    storage_key,
)
from gateway.errors import Unavailable
from gateway.redis.client import RedisDown, SharedRedis


class RedisSessionStore:
    """The cookie holds only a sealed random id; the session is in Redis, sealed too (under the
    Redis key's name), and expires there with the session. Revoking deletes it.

    There is no fallback while Redis is down: the cookie names a session that only Redis holds,
    so session requests get 503 (bearer tokens and vendor signatures keep working)."""

    shared = True

    def __init__(self, keys: SessionKeys, redis: SharedRedis, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.redis = redis
        self._clock = clock
        self._ids = DecryptedCache(monotonic)  # cookie value -> session id (saves the AES, not the lookup)
        # Stored record -> its Session: an unchanged record gives the same principal object, which
        # the policy's per-principal memo and the audit's principal cache need to hit.
        self._records = DecryptedCache(monotonic)

    def _key(self, sid: str) -> str:
        return self.redis.key("session", storage_key(sid))

    async def _call(self, operation: Callable[..., object]) -> object:
        try:
            return await self.redis.call(operation)  # type: ignore[arg-type]
        except RedisDown:
            raise Unavailable("browser sessions are unavailable while Redis is down", retry_after=5) from None

    async def issue(self, session: Session) -> str:
        key = self._key(session.sid)
        record = self.keys.seal(key, session.to_json())
        ttl = max(1, int(session.expires - self._clock()))
        await self._call(lambda r: r.set(key, record.encode(), ex=ttl))
        return self.keys.seal(COOKIE, orjson.dumps({"s": session.sid}))

    async def load(self, value: str) -> Session:
        sid: str | None = self._ids.get(value)
        if sid is None:
            try:
                sid = str(orjson.loads(open_cookie(self.keys, value))["s"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise SessionInvalid(SessionReason.MALFORMED) from None
            self._ids.put(value, sid)
        key = self._key(sid)
        record = await self._call(lambda r: r.get(key))
        if not isinstance(record, bytes):
            # Deleted at logout, or expired with the session: either way it has ended.
            raise SessionInvalid(SessionReason.REVOKED)
        text = record.decode("ascii", "replace")
        session: Session | None = self._records.get(text)
        if session is None:
            try:
                session = Session.from_json(self.keys.open(key, text))
            except SealError as exc:
                raise SessionInvalid(SessionReason(str(exc.reason))) from None
            self._records.put(text, session)
        if not secrets.compare_digest(session.sid, sid):
            raise SessionInvalid(SessionReason.TAMPERED)
        return session

    async def touch(self, session: Session, now: int) -> str | None:
        key = self._key(session.sid)
        record = self.keys.seal(key, session.touched(now).to_json()).encode()
        # XX: never re-create a session that a logout on another replica has just deleted.
        await self._call(lambda r: r.set(key, record, xx=True, keepttl=True))
        return None  # the cookie never changes: it is only the session's id

    async def revoke(self, session: Session) -> None:
        key = self._key(session.sid)
        await self._call(lambda r: r.delete(key))
