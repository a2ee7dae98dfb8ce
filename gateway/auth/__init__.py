"""Authentication: who is asking. Authenticators are tried in order.

Each returns a Principal ("mine, valid"), None ("not my scheme"), or raises Unauthenticated
("mine, bad credential"), which is final and never falls through to a weaker authenticator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import AmbiguousCredentials, Unauthenticated
from gateway.models import ANONYMOUS, IPAddress, Principal


@dataclass(slots=True)
class AuthRequest:
    """What an authenticator may look at. Header names are lower-case. Not frozen: one is built
    for every request, and a frozen dataclass costs three times as much to build."""

    method: str
    path: str  # the raw path, still percent-encoded, as sent
    query: str  # the raw query string, without '?'
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ', '
    client_ip: IPAddress
    # A route where a browser session may be used (object reads, /v1/auth/session): invariant 11.
    session_route: bool = False
    # Set by the session authenticator: a renewed session cookie (Set-Cookie) for the answer.
    renewal: str | None = None
    client_text: str = ""  # client_ip as text, when the edge has it already (audit records)


class Authenticator(Protocol):
    """One way of proving who is asking. ``carries`` is a cheap look at the request (is my kind of
    credential there at all?); ``authenticate`` checks it."""

    # True for the authenticator of the Authorization header (any scheme in it is its to judge).
    reads_authorization: bool

    def carries(self, request: AuthRequest) -> bool:
        """Does the request hold a credential of this kind (valid or not)?"""
        ...

    async def authenticate(self, request: AuthRequest) -> Principal | None:
        """Return a principal, None when the request does not use this scheme, or raise Unauthenticated."""
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

    async def authenticate(self, request: AuthRequest) -> Principal:
        present = [a for a in self.authenticators if a.carries(request)]
        count = len(present)
        if not self._reads_authorization and "authorization" in request.headers:
            count += 1  # an Authorization header nobody here reads is still a credential
        if count > 1:
            raise AmbiguousCredentials("the request carries more than one credential; send exactly one")
        if present:
            principal = await present[0].authenticate(request)
            if principal is not None:
                return principal
        if "authorization" in request.headers:
            # A credential that no configured scheme accepts is refused, never treated as anonymous.
            raise Unauthenticated(
                "the Authorization header uses a scheme or issuer this gateway does not accept"
            )
        if self.fallback is not None:
            principal = await self.fallback.authenticate(request)
            if principal is not None:
                return principal
        return ANONYMOUS
