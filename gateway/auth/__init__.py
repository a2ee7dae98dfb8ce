"""Authentication: who is asking. Authenticators are tried in order.

Each returns a Principal ("mine, valid"), None ("not my scheme"), or raises Unauthenticated
("mine, bad credential"), which is final and never falls through to a weaker authenticator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import Unauthenticated
from gateway.models import ANONYMOUS, IPAddress, Principal


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What an authenticator may look at. Header names are lower-case."""

    method: str
    path: str  # the raw path, still percent-encoded, as sent
    query: str  # the raw query string, without '?'
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ', '
    client_ip: IPAddress


class Authenticator(Protocol):
    async def authenticate(self, request: AuthRequest) -> Principal | None:
        """Return a principal, None when the request does not use this scheme, or raise Unauthenticated."""
        ...


class ReplayStore(Protocol):
    async def first_seen(self, nonce: str, ttl: float) -> bool:
        """Atomically record ``nonce`` for ``ttl`` seconds; False when it was already recorded."""
        ...


class AuthChain:
    """Tries each authenticator in order; no credential at all is the anonymous principal."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self.authenticators = tuple(authenticators)

    async def authenticate(self, request: AuthRequest) -> Principal:
        for authenticator in self.authenticators:
            principal = await authenticator.authenticate(request)
            if principal is not None:
                return principal
        # A credential that no configured scheme claims is refused, never treated as anonymous.
        if "authorization" in request.headers:
            raise Unauthenticated(
                "the Authorization header uses a scheme or issuer this gateway does not accept"
            )
        return ANONYMOUS
