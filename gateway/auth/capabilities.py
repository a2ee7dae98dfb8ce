"""Capabilities: company identity for browsers that block third-party cookies.

A signed-in employee opens the gateway's connect page in a popup from the vendor's page (a top-level,
first-party visit, so the gateway's own session cookie is there); the gateway hands that page, by
``postMessage`` to its exact origin, a capability: the session's delegate, sealed (AES-256-GCM under
the session keys, name-bound), naming the embedder it was handed to, the client address (by default),
a scope of datasets and key prefixes, and an expiry (15 minutes by default, never past the session).
The page puts it in a path prefix (``/v1/c/<capability>/datasets/...``), so ``<img>``, CORS images,
``fetch()``, ``Range`` and relative URLs inside multi-file formats all carry it without cookies or
headers, or in ``Authorization: Bearer`` for header-based loaders.

Every use resolves the session it delegates (with Redis, on every replica: a sign-out or revocation
ends every capability of the session at once) and checks the address, the expiry and the scope;
each refusal has its own code. The capability itself is never written to logs, records or metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from gateway.auth.cookies import SealError, SessionKeys
from gateway.auth.session_auth import SessionAuthenticator
from gateway.auth.sessions import Session
from gateway.errors import GatewayError, Unauthenticated
from gateway.models import AuthMethod, Principal

PREFIX = "gwc1."  # a capability, as a bearer token or a path segment; never a JWT (which has two dots)
_NAME = "gateway capability"
MAX_SCOPE = 32  # datasets, and prefixes: a page needs a handful


class CapabilityRefused(Unauthenticated):
    """A capability that cannot be used here: expired, ended with its session, from another address,
    malformed or altered. Each has its own code (``capability_<reason>``) and is a 401."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, scheme="Capability", reason=reason)
        self.code = f"capability_{reason}"


class CapabilityOutOfScope(GatewayError):
    """A valid capability used for a dataset or key it was not handed out for."""

    status = 403
    code = "capability_out_of_scope"


@dataclass(frozen=True, slots=True)
class Capability:
    cookie: str  # the session cookie value it delegates (sealed already)
    issuer: str
    embedder: str
    client: str | None  # the address it is bound to; None when not bound
    datasets: tuple[str, ...]
    prefixes: tuple[str, ...]  # "" means every key
    expires: int

    def in_scope(self, dataset: str, key: str | None) -> bool:
        if dataset not in self.datasets:
            return False
        return key is None or any(key.startswith(prefix) for prefix in self.prefixes)


class CapabilityAuthority:
    """Issues capabilities and turns one back into the principal it stands for (see the module docstring)."""

    def __init__(self, keys: SessionKeys, sessions: SessionAuthenticator, *, ttls: Mapping[str, float],
                 bind: Mapping[str, bool], clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.sessions = sessions
        self.ttls = dict(ttls)  # per issuer name: its browser sign-in's capability_ttl
        self.bind = dict(bind)
        self._clock = clock
        self._principals: dict[int, tuple[Principal, Principal]] = {}

    def issue(self, cookie: str, session: Session, *, embedder: str, client: str, datasets: tuple[str, ...],
              prefixes: tuple[str, ...]) -> tuple[str, int]:
        """A new capability for ``session`` (whose cookie value is ``cookie``) and its expiry."""
        now = int(self._clock())
        expires = min(now + int(self.ttls.get(session.issuer, 900)), session.expires)
        payload = {"c": cookie, "i": session.issuer, "o": embedder,
                   "a": client if self.bind.get(session.issuer, True) else None,
                   "d": list(datasets)[:MAX_SCOPE], "p": list(prefixes or ("",))[:MAX_SCOPE], "x": expires}
        return PREFIX + self.keys.seal(_NAME, orjson.dumps(payload)), expires

    def open(self, token: str) -> Capability:
        """The capability a token holds; CapabilityRefused (malformed) for anything the gateway did not seal."""
        if not token.startswith(PREFIX):
            raise CapabilityRefused("malformed", "this is not a capability this gateway issued")
        try:
            data = orjson.loads(self.keys.open(_NAME, token[len(PREFIX):]))
            return Capability(str(data["c"]), str(data["i"]), str(data["o"]),
                              None if data["a"] is None else str(data["a"]), tuple(map(str, data["d"])),
                              tuple(map(str, data["p"])), int(data["x"]))
        except SealError as exc:
            reason = "malformed" if exc.reason == "malformed" else "invalid"
            raise CapabilityRefused(reason, "this capability was altered, or sealed with a key this gateway no "
                                    "longer has; connect again") from None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise CapabilityRefused("malformed", "this is not a capability this gateway issued") from None

    async def authenticate(self, token: str, client: str, origin: str | None) -> tuple[Capability, Principal]:
        """The capability and the principal it stands for, from ``client`` (the request's address)
        and a page of ``origin`` (the request's Origin header, when the browser sent one)."""
        capability, session = await self._check(token, client, origin)
        return capability, self._principal(session)

    async def _check(self, token: str, client: str, origin: str | None) -> tuple[Capability, Session]:
        capability = self.open(token)
        now = self._clock()
        if now >= capability.expires:
            raise CapabilityRefused("expired", "the capability has expired; the page renews it, or connects again")
        # Bound to the address it was handed to (a leaked URL is useless elsewhere), and to the page
        # it was handed to (a page of another site cannot use it through CORS).
        if capability.client is not None and capability.client != client:
            raise CapabilityRefused("wrong_address", "the capability was handed to another address; connect again "
                                    "from this one")
        if origin is not None and origin != "null" and origin != capability.embedder:
            raise CapabilityRefused("wrong_origin", "the capability belongs to another site's page")
        try:
            session, _ = await self.sessions.resolve([capability.cookie])
        except Unauthenticated as exc:  # signed out, revoked, expired, idle: the capability ends with it
            raise CapabilityRefused("revoked" if exc.reason in ("revoked", "unknown_issuer") else "session_ended",
                                    "the browser session behind this capability has ended; sign in again") from None
        return capability, session

    async def renew(self, token: str, client: str, origin: str | None) -> tuple[str, int, Principal]:
        """A fresh capability for a live one, while its session lives (no new popup); the session's
        idle clock moves on, as it would for the cookie."""
        capability, session = await self._check(token, client, origin)
        now = int(self._clock())
        touched = await self.sessions.store.touch(session, now)  # a cookie store re-seals: keep the new value
        fresh, expires = self.issue(touched or capability.cookie, session.touched(now), embedder=capability.embedder,
                                    client=capability.client or client, datasets=capability.datasets,
                                    prefixes=capability.prefixes)
        return fresh, expires, self._principal(session)

    def _principal(self, session: Session) -> Principal:
        """The session's identity as a capability's: one object per session, so the policy's
        per-principal memo and the audit's principal cache hit."""
        source = session.principal
        cached = self._principals.get(id(source))
        if cached is not None and cached[0] is source:  # the entry holds its source: an id is never reused
            return cached[1]
        if len(self._principals) >= 4096:
            self._principals.clear()
        principal = Principal(AuthMethod.CAPABILITY, subject=source.subject, email=source.email,
                              issuer=source.issuer, groups=source.groups)
        self._principals[id(source)] = (source, principal)
        return principal
