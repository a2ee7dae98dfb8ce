"""Authentication: who is asking. Authenticators are tried in order.

Each returns a Principal ("mine, valid"), None ("not my scheme"), or raises Unauthenticated
("mine, bad credential"), which is final and never falls through to a weaker authenticator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from gateway.errors import AmbiguousCredentials, Unauthenticated
from gateway.models import ANONYMOUS, IPAddress, Principal


class AuthRequest(NamedTuple):
    """What an authenticator may look at, parsed once at the edge. Header names are lower-case.
    Immutable: what authentication changes (a renewed session) is returned in an :class:`Identity`."""

    method: str
    path: str  # the raw path, still percent-encoded, as sent
    query: str  # the raw query string, without '?'
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ', '
    client_ip: IPAddress
    # A route where a browser session may be used (object reads, /v1/auth/session): invariant 11.
    session_route: bool = False
    client_text: str = ""  # client_ip as text (audit records)


class Identity(NamedTuple):
    """Who the request's credential proves, and what the answer must carry for it."""

    principal: Principal
    renewal: str | None = None  # a renewed browser-session cookie (a Set-Cookie value) for the answer


NOBODY = Identity(ANONYMOUS)


class Authenticator(Protocol):
    """One way of proving who is asking. ``carries`` is a cheap look at the request (is my kind of
    credential there at all?); ``authenticate`` checks it."""

    # True for the authenticator of the Authorization header (any scheme in it is its to judge).
    reads_authorization: bool

    def carries(self, request: AuthRequest) -> bool:
        """Does the request hold a credential of this kind (valid or not)?"""
        ...

    async def authenticate(self, request: AuthRequest) -> Principal | Identity | None:
        """Return a principal (or an identity, when the answer must carry something for it), None
        when the request does not use this scheme, or raise Unauthenticated."""
        ...


class ReplayStore(Protocol):
    async def first_seen(self, nonce: str, ttl: float) -> bool:
        """Atomically record ``nonce`` for ``ttl`` seconds; False when it was already recorded."""
        ...


class AuthChain:
    """Finds the one credential a request carries and has its authenticator check it.

    No credential at all is the ``fallback`` (development mode) or the anonymous principal. Two
    credentials (say vendor signature headers and a bearer token) are refused as ambiguous: the
    gateway never chooses between them, since one of them might be the forged one.
    """

    def __init__(self, authenticators: Sequence[Authenticator], *, fallback: Authenticator | None = None) -> None:
        self.authenticators = tuple(authenticators)
        self.fallback = fallback
        self._reads_authorization = any(a.reads_authorization for a in self.authenticators)

    async def authenticate(self, request: AuthRequest) -> Identity:
        present = [a for a in self.authenticators if a.carries(request)]
        count = len(present)
        if not self._reads_authorization and "authorization" in request.headers:
            count += 1  # an Authorization header nobody here reads is still a credential
        if count > 1:
            raise AmbiguousCredentials("the request carries more than one credential; send exactly one")
        if present:
            found = await present[0].authenticate(request)
            if found is not None:
                return found if type(found) is Identity else Identity(found)  # type: ignore[arg-type]
        if "authorization" in request.headers:
            # A credential that no configured scheme accepts is refused, never treated as anonymous.
            raise Unauthenticated(
                "the Authorization header uses a scheme or issuer this gateway does not accept"
            )
        if self.fallback is not None:
            fallback = await self.fallback.authenticate(request)
            if fallback is not None:
                return fallback if type(fallback) is Identity else Identity(fallback)  # type: ignore[arg-type]
        return NOBODY
