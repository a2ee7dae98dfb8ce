"""What the offline commands need from the composition root: the policy in force without a server
(a file, or the embedded default ``gateway serve`` runs), a dataset's backend as a :class:`Lister`
(``gateway urls --list``), and the state and admit step that decide offline (``gateway
test-policy``). The CLI never names a concrete backend: they are chosen here, by the same
:class:`StateBuilder` the server uses.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry

from gateway.app.build import StateBuilder
from gateway.auth import AuthChain
from gateway.auth.replay import MemoryReplayStore
from gateway.backends import Lister
from gateway.config import PolicyFile, default_policy, load_policy
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.policy import compile_policy
from gateway.service import Gate, State
from gateway.settings import Settings


@dataclass(frozen=True)
class OfflinePolicy:
    """A policy as the server would load it, and where it came from (for messages)."""

    policy: PolicyFile
    raw: bytes | None  # the file's bytes (its version is their hash); None for the embedded default
    source: str


def load_offline_policy(settings: Settings) -> OfflinePolicy:
    """``settings.config`` (``--config``, ``GATEWAY_CONFIG``), or else the embedded default: the
    dataset ``local`` over ``settings.local_dir``, exactly as ``gateway serve`` runs it."""
    if settings.config is not None:
        policy, raw = load_policy(settings.config)
        return OfflinePolicy(policy, raw, str(settings.config))
    policy = default_policy(settings.local_dir, settings.cors_origins)
    return OfflinePolicy(policy, None, f"the embedded default (dataset local: {settings.local_dir})")


@asynccontextmanager
async def dataset_lister(settings: Settings, loaded: OfflinePolicy, dataset: str) -> AsyncIterator[Lister]:
    """The backend of ``dataset``, built as the server builds it (its credentials, its endpoint), as
    a :class:`Lister`. Raises ConfigError for an unknown dataset or a backend that cannot list."""
    config = loaded.policy.datasets.get(dataset)
    if config is None:
        raise ConfigError(loaded.source, [f"no dataset {dataset!r}; the policy has "
                                          f"{', '.join(sorted(loaded.policy.datasets)) or 'none'}"])
    # Listing signs nothing: a throwaway signing key, so no URL this builds could ever be used.
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=3.0)) as http:
        builder = StateBuilder(settings, signing_key=secrets.token_bytes(32), http=http, replay=MemoryReplayStore(),
                               metrics=Metrics(CollectorRegistry()), clock=time.time, environ=None)
        try:
            backend = builder.backend(dataset, config.backend)
        except ConfigError as exc:
            raise ConfigError(f"datasets.{dataset}.backend", exc.problems) from None
        if not isinstance(backend, Lister):
            raise ConfigError(f"datasets.{dataset}.backend", [f"backend kind {config.backend.kind} cannot list"])
        yield backend


def offline_state(loaded: OfflinePolicy) -> State:
    """The state the admit step decides under, without backends, authenticators or secrets: offline
    decisions take a known identity (``Gate.admit_principal``), so nothing is authenticated, and
    nothing is signed. The compiled policy is the server's own (``compile_policy``)."""
    policy = loaded.policy
    return State(compile_policy(policy, loaded.raw), {}, AuthChain([]), frozenset(policy.cors.allow_origins),
                 loaded_at=time.time())


def offline_gate() -> Gate:
    """The server's admit step, with its own metrics and no rate limiter: a test run's cases are not
    spent against each other's limits."""
    return Gate(metrics=Metrics(CollectorRegistry()))

