"""Browser sessions: what one is, where it lives, and how it ends.

Two stores behind one ``SessionStore`` protocol (oauth2-proxy's pattern): without Redis the
session itself is sealed into the cookie and a logout is remembered by this process only; with
Redis the cookie holds a sealed random id, the session lives in Redis, and a logout deletes it for
every replica at once. Neither ever holds the identity provider's tokens.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

import orjson

from gateway.auth.cookies import SealError, SessionKeys
from gateway.models import AuthMethod, Principal

COOKIE = "__Host-gateway_session"
MAX_COOKIE_BYTES = 1536  # name=value; well under the 4 KB a browser keeps, and never split
CACHE_TTL = 300.0  # seconds a decrypted cookie is remembered (its times are checked on every use)
CACHE_ENTRIES = 10_000


class SessionReason(StrEnum):
    """Why a session cookie was refused: a fixed set, safe for audit records and metric labels."""

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    TAMPERED = "tampered"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"
    IDLE = "idle"
    REVOKED = "revoked"
    UNKNOWN_ISSUER = "unknown_issuer"
    WRONG_ROUTE = "wrong_route"


class SessionInvalid(Exception):
    def __init__(self, reason: SessionReason) -> None:
        super().__init__(str(reason))
        self.reason = reason


class SessionTooLarge(Exception):
    """The signed-in user's session does not fit a cookie (usually: too many groups)."""


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser. Times are Unix seconds; ``seen`` moves on as the browser is used
    (idle expiry), ``expires`` never does (a new sign-in is needed after it)."""

    sid: str
    issuer: str  # the configured issuer's name
    subject: str
    email: str | None
    groups: tuple[str, ...]
    created: int
    expires: int
    seen: int
    principal: Principal = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Built once per session, so the policy's per-principal memo hits on every later request.
        object.__setattr__(self, "principal", Principal(
            AuthMethod.BROWSER_SESSION, subject=self.subject, email=self.email, issuer=self.issuer,
            groups=frozenset(self.groups)))

    def to_json(self) -> bytes:
        return orjson.dumps({"s": self.sid, "i": self.issuer, "u": self.subject, "e": self.email,
                             "g": list(self.groups), "c": self.created, "x": self.expires, "l": self.seen})

    @classmethod
    def from_json(cls, raw: bytes) -> Session:
        try:
            data: Any = orjson.loads(raw)
            session = cls(str(data["s"]), str(data["i"]), str(data["u"]), data["e"], tuple(map(str, data["g"])),
                          int(data["c"]), int(data["x"]), int(data["l"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise SessionInvalid(SessionReason.MALFORMED) from None
        if session.email is not None and not isinstance(session.email, str):
            raise SessionInvalid(SessionReason.MALFORMED)
        return session

    def touched(self, now: int) -> Session:
        return replace(self, seen=now)


def storage_key(sid: str) -> str:
    """Where a session lives in Redis: a hash of its id, so a dump of Redis holds no cookie ids."""
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore(Protocol):
    """Where sessions live. ``shared`` says whether a revocation reaches every replica."""

    shared: bool

    async def issue(self, session: Session) -> str:
        """Store a new session; returns the cookie value. SessionTooLarge if it cannot fit."""
        ...

    async def load(self, value: str) -> Session:
        """The session a cookie value names; SessionInvalid (or Unavailable) otherwise."""
        ...

    async def touch(self, session: Session, now: int) -> str | None:
        """Record that the session was used at ``now`` (the caller decides how often: not on every
        request); a new cookie value when the cookie itself must change."""
        ...

    async def revoke(self, session: Session) -> None:
        """End the session now: its cookie is refused from here on."""
        ...


class Revocations:
    """Session ids ended before their time, each remembered until the session would have expired.

    Bounded: when full, the entries closest to their end are forgotten first. Every revocation
    belongs to a real sign-in, so filling it takes as many sign-ins as it holds."""

    def __init__(self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._until: dict[str, float] = {}

    def add(self, sid: str, until: float) -> None:
        if len(self._until) >= self.max_entries:
            now = self._clock()
            self._until = {s: t for s, t in self._until.items() if t > now}
            while len(self._until) >= self.max_entries:
                del self._until[min(self._until, key=self._until.__getitem__)]
        self._until[sid] = until

    def __contains__(self, sid: str) -> bool:
        until = self._until.get(sid)
        return until is not None and until > self._clock()


class DecryptedCache:
    """Cookie value -> what it decrypted to, for ``CACHE_TTL`` seconds, bounded. The times,
    the revocation list and the idle limit are still checked on every use."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._entries: dict[str, tuple[Any, float]] = {}

    def get(self, value: str) -> Any:
        entry = self._entries.get(value)
        if entry is None:
            return None
        if entry[1] < self._monotonic():
            del self._entries[value]
            return None
        return entry[0]

    def put(self, value: str, item: object) -> None:
        if len(self._entries) >= CACHE_ENTRIES:
            self._entries.clear()
        self._entries[value] = (item, self._monotonic() + CACHE_TTL)

    def drop(self, value: str) -> None:
        self._entries.pop(value, None)


def open_cookie(keys: SessionKeys, value: str) -> bytes:
    try:
        return keys.open(COOKIE, value)
    except SealError as exc:
        raise SessionInvalid(SessionReason(str(exc.reason))) from None


class CookieSessionStore:
    """Without Redis: the session sealed into the cookie; logouts remembered by this process.

    The cookie is re-issued only when the idle clock must move on (see ``touch``), never on
    every response: concurrent responses would race to overwrite it (Starlette's SessionMiddleware)."""

    shared = False

    def __init__(self, keys: SessionKeys, *, revocations: Revocations | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.revocations = revocations or Revocations()
        self._cache = DecryptedCache(monotonic)

    async def issue(self, session: Session) -> str:
        value = self.keys.seal(COOKIE, session.to_json())
        if len(COOKIE) + 1 + len(value) > MAX_COOKIE_BYTES:
            raise SessionTooLarge(f"the session would be {len(value)} bytes with {len(session.groups)} groups")
        return value

    async def load(self, value: str) -> Session:
        session: Session | None = self._cache.get(value)
        if session is None:
            session = Session.from_json(open_cookie(self.keys, value))
            self._cache.put(value, session)
        if session.sid in self.revocations:
            raise SessionInvalid(SessionReason.REVOKED)
        return session

    async def touch(self, session: Session, now: int) -> str | None:
        return await self.issue(session.touched(now))  # the idle clock lives in the cookie

    async def revoke(self, session: Session) -> None:
        self.revocations.add(session.sid, session.expires)
