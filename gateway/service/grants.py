"""Grants and sessions: what the full path decided, kept for the fast lane (gateway/api/fastlane.py).

A grant is a whole answer for one exact request; a session is only who is asking (credential and
client), so that a request for a new key skips authentication but is still decided by the policy.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

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


Entry = TypeVar("Entry", "Grant", "Session")


class _Expiring(Generic[Entry]):
    """At most ``entries`` entries, each valid under the policy state it was made for and until its
    ``valid_until``; the oldest go first (insertion order, no LRU upkeep on hits)."""

    def __init__(self, holder: StateHolder, clock: Callable[[], float], entries: int) -> None:
        self.holder = holder
        self.clock = clock
        self.entries = entries
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Entry | None:
        """The entry for this exact key, while it is still valid."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.state is not self.holder.current or self.clock() >= entry.valid_until:
            del self._entries[key]
            return None
        return entry

    def _put(self, key: Hashable, entry: Entry) -> None:
        entries = self._entries
        if key not in entries and len(entries) >= self.entries:
            entries.popitem(last=False)  # O(1); deleting next(iter(dict)) rescans freed slots every time
        entries[key] = entry


class Grants(_Expiring[Grant]):
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
        self._put(grant_key, Grant(state, ds.name, key, rule, principal, client_ip, url, url.url.encode("latin-1"),
                                   valid_until))


@dataclass(frozen=True, slots=True)
class Session:
    """Who a credential from one client is, as the full path authenticated it: lets a request for
    a new key with the same credential skip authentication (never the policy decision)."""

    state: State
    principal: Principal
    client_ip: IPAddress
    valid_until: float


class Sessions(_Expiring[Session]):
    def remember(self, session_key: Hashable, state: State, principal: Principal, client_ip: IPAddress) -> None:
        """Keep an authentication made under ``state`` (the state in force before it started)."""
        if not self.entries or principal.method not in GRANTABLE or state is not self.holder.current:
            return
        valid_until = principal.expires_at if principal.expires_at is not None else math.inf
        self._put(session_key, Session(state, principal, client_ip, valid_until))
