"""Everything derived from one policy file, built completely and then swapped in one step."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.auth import AuthChain
from gateway.auth.browser_client import BrowserClient
from gateway.auth.capabilities import CapabilityAuthority
from gateway.auth.session_auth import SessionAuthenticator
from gateway.backends import Backend, ObjectSource
from gateway.policy import CompiledPolicy


@dataclass(frozen=True)
class State:
    policy: CompiledPolicy
    backends: Mapping[str, Backend]
    auth: AuthChain
    cors_origins: frozenset[str]
    loaded_at: float = field(default_factory=time.time)
    sources: Mapping[str, ObjectSource] = field(default_factory=dict)  # proxy datasets' object readers
    # Browser sign-in: a client per issuer with ``browser:`` (by name), and the session check.
    browsers: Mapping[str, BrowserClient] = field(default_factory=dict)
    sessions: SessionAuthenticator | None = None
    capabilities: CapabilityAuthority | None = None  # with browser sign-in: the session's delegates
    # Origins whose pages may use the browser session (credentialed CORS is for them only).
    embedders: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        embedders = frozenset(o for client in self.browsers.values() for o in client.browser.embedders)
        object.__setattr__(self, "embedders", embedders)

    @property
    def version(self) -> str:
        return self.policy.version


class StateHolder:
    """One reference to the state in force. Readers take ``current`` once per request, so a
    reload never mixes two policies within one request."""

    def __init__(self, state: State) -> None:
        self.current = state
        self.last_reload_error: str | None = None
        self.last_reload_at: float | None = None

    def swap(self, state: State) -> None:
        self.current = state
        self.last_reload_error = None
