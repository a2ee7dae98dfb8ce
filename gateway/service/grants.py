"""Grants: redirects just authorized, kept per exact request for the hot path (gateway/api/fastlane.py)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from gateway.models import AuthMethod, Principal, SignedUrl
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
