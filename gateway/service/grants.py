"""Grants and sessions: what the full path decided, kept for the fast lane (gateway/api/fastlane.py).

A grant is a whole answer for one exact request; a session is only who is asking (credential and
client), so that a request for a new key skips authentication but is still decided by the policy.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from gateway.models import AuthMethod, IPAddress, Principal, SignedUrl
from gateway.policy import CompiledDataset
from gateway.service.state import State, StateHolder

# Vendor HMAC signatures are single use (replay-checked per request): never granted.
GRANTABLE = frozenset({AuthMethod.OIDC, AuthMethod.ANONYMOUS, AuthMethod.DEVELOPMENT})


@dataclass(frozen=True, slots=True)
class Grant:
    """A redirect just authorized for one exact request (credential, client, path), kept so that
    the same request repeated can be answered without authenticating and deciding again.

    It is only as good as everything that decided it: it ends with the policy state it was decided
    under (a reload ends every grant), with the credential (a token's ``exp``), and with the URL's
    time bucket (so it never serves a URL with less than its minimum remaining life)."""

    state: State
    dataset: str
    key: str
    rule: str | None
    principal: Principal
    client_ip: str
    url: SignedUrl
    location: bytes
    valid_until: float


class Grants:
    """At most ``entries`` grants; the oldest go first (insertion order, no LRU upkeep on hits)."""

    def __init__(self, holder: StateHolder, clock: Callable[[], float], entries: int) -> None:
        self.holder = holder
        self.clock = clock
        self.entries = entries
        self._grants: OrderedDict[Hashable, Grant] = OrderedDict()

    def __len__(self) -> int:
        return len(self._grants)

    def get(self, grant_key: Hashable) -> Grant | None:
        """The grant for this exact request, while it is still valid."""
        grant = self._grants.get(grant_key)
        if grant is None:
            return None
        if grant.state is not self.holder.current or self.clock() >= grant.valid_until:
            del self._grants[grant_key]
            return None
        return grant

    def remember(self, grant_key: Hashable, state: State, ds: CompiledDataset, key: str, rule: str | None,
                 principal: Principal, client_ip: str, url: SignedUrl) -> None:
        """Keep an allowed redirect, unless something about it must be decided on every request."""
        if not self.entries or ds.config.rate_limit is not None or principal.method not in GRANTABLE:
            return
        ttl = int(ds.url_ttl)
        share = state.policy.source.defaults.min_remaining
        # Never past the URL's time bucket, nor its minimum remaining life, nor the credential.
        valid_until = min(url.signed_at + max(1, int(ttl * (1 - share))), url.expires_at - ttl * share)
        if principal.expires_at is not None:
            valid_until = min(valid_until, principal.expires_at)
        grants = self._grants
        if grant_key not in grants and len(grants) >= self.entries:
            grants.popitem(last=False)  # O(1); deleting next(iter(dict)) rescans freed slots every time
        grants[grant_key] = Grant(state, ds.name, key, rule, principal, client_ip, url, url.url.encode("latin-1"),
                                  valid_until)


@dataclass(frozen=True, slots=True)
class Session:
    """Who a credential from one client is, as the full path authenticated it: lets a request for
    a new key with the same credential skip authentication (never the policy decision)."""

    state: State
    principal: Principal
    client_ip: IPAddress
    valid_until: float


class Sessions:
    """Authentications per (credential, client), bounded like :class:`Grants`."""

    def __init__(self, holder: StateHolder, clock: Callable[[], float], entries: int) -> None:
        self.holder = holder
        self.clock = clock
        self.entries = entries
        self._sessions: OrderedDict[Hashable, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_key: Hashable) -> Session | None:
        session = self._sessions.get(session_key)
        if session is None:
            return None
        if session.state is not self.holder.current or self.clock() >= session.valid_until:
            del self._sessions[session_key]
            return None
        return session

    def remember(self, session_key: Hashable, state: State, principal: Principal, client_ip: IPAddress) -> None:
        """Keep an authentication made under ``state`` (the state in force before it started)."""
        if not self.entries or principal.method not in GRANTABLE or state is not self.holder.current:
            return
        valid_until = principal.expires_at if principal.expires_at is not None else math.inf
        sessions = self._sessions
        if session_key not in sessions and len(sessions) >= self.entries:
            sessions.popitem(last=False)
        sessions[session_key] = Session(state, principal, client_ip, valid_until)
