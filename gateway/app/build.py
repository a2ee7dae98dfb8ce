"""Building the state a policy implies: the one place that chooses concrete backends, authenticators
and audit sinks by their configured kind (part of the composition root)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from gateway.audit import AuditSink
from gateway.audit.checkpoint import CheckpointPolicy
from gateway.audit.log import AuditLog
from gateway.audit.redis_stream import RedisStreamSink
from gateway.audit.sinks import FileSink, StdoutSink
from gateway.auth import AuthChain, Authenticator, ReplayStore
from gateway.auth.browser_client import BrowserClient, load_client_secret
from gateway.auth.capabilities import CapabilityAuthority
from gateway.auth.cookies import SessionKeys
from gateway.auth.dev import DevAuthenticator
from gateway.auth.oidc import OidcAuthenticator
from gateway.auth.session_auth import SessionAuthenticator
from gateway.auth.sessions import SessionStore
from gateway.auth.vendor import VendorAuthenticator
from gateway.backends import Backend, ObjectSource
from gateway.backends.http_pool import UpstreamPool
from gateway.backends.local import LocalBackend
from gateway.config import AuditConfig, AuthConfig, AzureBackend, GcsBackend, PolicyFile, S3Backend, origin_of
from gateway.config import FileSink as FileSinkConfig
from gateway.config import LocalBackend as LocalBackendConfig
from gateway.config import RedisStreamSink as RedisStreamSinkConfig
from gateway.config import StdoutSink as StdoutSinkConfig
from gateway.config.validation import dataset_problems, state_problems
from gateway.config.validation import warnings as policy_warnings
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.policy import compile_policy
from gateway.redis.client import SharedRedis
from gateway.routes import CALLBACK
from gateway.service import State
from gateway.settings import Settings, is_loopback_host

log = logging.getLogger("gateway")


def check_dev_mode(settings: Settings) -> None:
    """Development mode hands a fixed identity to every caller: loopback only, and said loudly."""
    problems = []
    if not settings.dev_mode:
        problems.append("GATEWAY_DEV_PRINCIPAL needs GATEWAY_DEV_MODE=true")
    if not is_loopback_host(settings.host):
        problems.append(f"development mode listens on loopback only, not {settings.host}")
    if problems:
        raise ConfigError("development mode", problems)
    log.warning("DEVELOPMENT MODE: every request without a credential is %s; never run this way in production",
                settings.dev_principal)


class StateBuilder:
    """Builds the :class:`State` of a policy, completely or not at all (every problem in one
    ConfigError). Unchanged parts of a reloaded policy keep their objects: a backend keeps its
    clients and credentials, an authenticator its JWKS and verified-token caches."""

    def __init__(self, settings: Settings, *, signing_key: bytes, http: httpx.AsyncClient, replay: ReplayStore,
                 metrics: Metrics, clock: Callable[[], float], environ: Mapping[str, str] | None,
                 pool: UpstreamPool | None = None, sessions: SessionStore | None = None,
                 keys: SessionKeys | None = None) -> None:
        self.settings = settings
        self.pool = pool or UpstreamPool()
        self.sessions = sessions
        self.keys = keys
        self.signing_key = signing_key
        self.http = http
        self.replay = replay
        self.metrics = metrics
        self.clock = clock
        self.environ = environ
        self._authenticators: dict[str, tuple[object, Authenticator]] = {}
        self._browsers: dict[str, tuple[object, BrowserClient]] = {}

    def __call__(self, policy: PolicyFile, raw: bytes | None, previous: State | None) -> State:
        # The offline checks check-config makes too (config/validation.py): one validation, shared.
        problems: list[str] = state_problems(policy)
        refused = {name for name, dataset in policy.datasets.items() if dataset_problems(name, dataset)}
        backends: dict[str, Backend] = {}
        for name, dataset in policy.datasets.items():
            old = previous.backends.get(name) if previous else None
            old_config = previous.policy.source.datasets[name].backend if previous and old else None
            if old is not None and old_config == dataset.backend:
                backends[name] = old  # unchanged: keep its clients, credentials and caches
                continue
            try:
                backends[name] = self.backend(name, dataset.backend)
            except ConfigError as exc:
                problems.extend(f"datasets.{name}.backend: {p}" for p in exc.problems)
        sources: dict[str, ObjectSource] = {}
        for name, dataset in policy.datasets.items():
            # proxy and auto datasets stream through the gateway (auto: the reads a page can see);
            # a local dataset serves its own files whatever its delivery.
            if dataset.delivery == "redirect" or dataset.backend.kind == "local" or name not in backends \
                    or name in refused:
                continue
            old_source = previous.sources.get(name) if previous else None
            if old_source is not None and previous is not None and previous.backends.get(name) is backends[name]:
                sources[name] = old_source  # same backend object: same credentials and token
                continue
            try:
                sources[name] = self.source(dataset.backend, backends[name])
            except ConfigError as exc:
                problems.extend(f"datasets.{name}.delivery: {p}" for p in exc.problems)
        authenticators: list[Authenticator] = []
        try:
            authenticators = self.authenticators(policy.auth)
        except ConfigError as exc:
            problems.extend(f"auth: {p}" for p in exc.problems)
        browsers: dict[str, BrowserClient] = {}
        sessions: SessionAuthenticator | None = None
        try:
            browsers, sessions = self.browser_sign_in(policy.auth)
        except ConfigError as exc:
            problems.extend(f"auth: {p}" for p in exc.problems)
        if sessions is not None:
            authenticators.append(sessions)
        if problems:
            raise ConfigError(str(self.settings.config or "<embedded default>"), problems)
        auth = AuthChain(authenticators, fallback=self.fallback())
        cors = frozenset(policy.cors.allow_origins) | frozenset(self.settings.cors_origins)
        for warning in policy_warnings(policy):
            log.warning("%s", warning)
        capabilities = None
        if sessions is not None and self.keys is not None:
            issuers = [issuer for issuer in policy.auth.oidc if issuer.browser is not None]
            capabilities = CapabilityAuthority(
                self.keys, sessions, clock=self.clock,
                ttls={i.name: i.browser.capability_ttl for i in issuers if i.browser is not None},
                bind={i.name: i.browser.capability_bind_address for i in issuers if i.browser is not None})
        return State(compile_policy(policy, raw), backends, auth, cors, loaded_at=self.clock(), sources=sources,
                     browsers=browsers, sessions=sessions, capabilities=capabilities)

    def backend(self, dataset: str, config: LocalBackendConfig | S3Backend | GcsBackend | AzureBackend) -> Backend:
        match config:
            case LocalBackendConfig():
                return LocalBackend(config, dataset=dataset, base_url=self.settings.base_url(),
                                    signing_key=self.signing_key)
            case S3Backend():
                # Imported here: boto3 costs startup time that local-only deployments should not pay.
                from gateway.backends.s3 import S3Backend as S3

                return S3(config, dataset=dataset)
            case GcsBackend():
                from gateway.backends.gcs import GcsBackend as Gcs

                return Gcs(config)
            case AzureBackend():
                from gateway.backends.azure import AzureBackend as Azure

                return Azure(config, clock=self.clock, environ=self.environ)

    def source(self, config: LocalBackendConfig | S3Backend | GcsBackend | AzureBackend,
               backend: Backend) -> ObjectSource:
        """The object reader of a proxy dataset, over the dataset's own backend and its credentials."""
        from gateway.backends.gcs import GcsBackend as Gcs
        from gateway.backends.s3 import S3Backend as S3

        if isinstance(config, S3Backend) and isinstance(backend, S3):
            from gateway.backends.s3_source import S3Source

            return S3Source(backend, self.pool, clock=self.clock)
        if isinstance(config, GcsBackend) and isinstance(backend, Gcs):
            from gateway.backends.gcs_source import GcsSource

            credentials = backend.access_credentials()
            if credentials is None:
                raise ConfigError("delivery", ["proxy delivery reads GCS with an OAuth access token, and an HMAC "
                                               "key has none: use a service-account key or Workload Identity"])
            return GcsSource(config, credentials, self.pool)
        if isinstance(config, AzureBackend):
            from gateway.backends.azure import AzureBackend as Azure
            from gateway.backends.azure_source import AzureSource

            if isinstance(backend, Azure):
                return AzureSource(backend, self.pool)
        raise ConfigError("delivery", [f"delivery: proxy is not available for backend kind {config.kind}"])

    def fallback(self) -> Authenticator | None:
        """Development mode: the principal of requests without a credential (real credentials are
        still checked as they would be)."""
        if self.settings.dev_principal:
            return DevAuthenticator(self.settings.dev_principal, frozenset(self.settings.dev_groups))
        return None

    def authenticators(self, config: AuthConfig) -> list[Authenticator]:
        """Vendor HMAC and OIDC (each request is checked by the one whose credential it carries)."""
        authenticators: list[Authenticator] = []
        if config.vendors:
            authenticators.append(self._reuse("vendors", config.vendors, lambda: VendorAuthenticator(
                config.vendors, replay=self.replay, clock=self.clock, environ=self.environ)))
        if config.oidc:
            authenticators.append(self.oidc(config))
        return authenticators

    def oidc(self, config: AuthConfig) -> OidcAuthenticator:
        authenticator = self._reuse("oidc", config.oidc, lambda: OidcAuthenticator(
            config.oidc, http=self.http, clock=self.clock,
            on_fetch=lambda issuer, result: self.metrics.jwks_fetches.labels(issuer, result).inc()))
        assert isinstance(authenticator, OidcAuthenticator)  # noqa: S101 - _reuse returns what it built
        return authenticator

    def browser_sign_in(self, config: AuthConfig) -> tuple[dict[str, BrowserClient], SessionAuthenticator | None]:
        """A sign-in client per issuer with ``browser:``, and the session authenticator; the
        startup checks that browser sign-in needs, all reported at once."""
        issuers = [issuer for issuer in config.oidc if issuer.browser is not None]
        if not issuers:
            return {}, None
        problems = []
        if self.sessions is None:
            problems.append("browser sign-in needs GATEWAY_SESSION_KEYS (comma-separated, each base64 of at least "
                            "32 random bytes: openssl rand -base64 32): sessions must survive restarts and work on "
                            "every replica")
        public = self.settings.public_url
        origin = origin_of(public or "")
        if not public or origin is None or not (origin.startswith("https://") or _loopback(origin)):
            problems.append("browser sign-in needs GATEWAY_PUBLIC_URL, the https:// address browsers use "
                            "(the issuer sends them back to <GATEWAY_PUBLIC_URL>/v1/auth/callback)")
        oidc = self.oidc(config)  # the bearer authenticator's key caches serve the ID tokens too
        clients: dict[str, BrowserClient] = {}
        for i, issuer in enumerate(config.oidc):
            if issuer.browser is None:
                continue
            secret, problem = load_client_secret(issuer.browser, self.environ or os.environ)
            if problem is not None or secret is None:
                problems.append(f"oidc.{i}.browser.{problem}")
                continue
            cached = self._browsers.get(issuer.name)
            if cached is not None and cached[0] == (issuer, secret, public):
                clients[issuer.name] = cached[1]  # unchanged: keep its discovery document
                continue
            clients[issuer.name] = BrowserClient(
                issuer, client_secret=secret, redirect_uri=(public or "").rstrip("/") + CALLBACK,
                http=self.http, jwks=oidc.jwks(issuer.name), clock=self.clock)
            self._browsers[issuer.name] = ((issuer, secret, public), clients[issuer.name])
        if problems or self.sessions is None or origin is None:
            raise ConfigError("auth", problems)
        browsers = {name: client.browser for name, client in clients.items()}
        return clients, SessionAuthenticator(self.sessions, browsers, own_origin=origin, clock=self.clock)

    def _reuse(self, name: str, config: object, build: Callable[[], Authenticator]) -> Authenticator:
        cached = self._authenticators.get(name)
        if cached is not None and cached[0] == config:
            return cached[1]
        authenticator = build()
        self._authenticators[name] = (config, authenticator)
        return authenticator


def _loopback(origin: str) -> bool:
    """Plain http is for loopback only: browsers keep Secure cookies there (and nowhere else)."""
    return is_loopback_host(urlsplit(origin).hostname or "")


def _audit_sink(sink: StdoutSinkConfig | FileSinkConfig | RedisStreamSinkConfig, redis: SharedRedis | None,
                where: str) -> AuditSink:
    match sink:
        case FileSinkConfig():
            return FileSink(Path(sink.path))
        case RedisStreamSinkConfig():
            if redis is None:
                raise ConfigError(where, ["kind redis_stream needs GATEWAY_REDIS_URL"])
            return RedisStreamSink(redis, sink.stream, sink.maxlen)
    return StdoutSink()


def audit_log(config: AuditConfig, settings: Settings, metrics: Metrics, redis: SharedRedis | None) -> AuditLog:
    sinks = [_audit_sink(sink, redis, "audit.sinks") for sink in config.sinks]
    marks = config.checkpoints
    checkpoints = CheckpointPolicy(every=marks.every, interval=marks.interval, sinks=None if marks.sinks is None else
                                   [_audit_sink(sink, redis, "audit.checkpoints.sinks") for sink in marks.sinks])
    return AuditLog(sinks, max_queue=settings.audit_queue_size, fail_closed=config.fail_closed,
                    on_drop=metrics.audit_dropped.inc, checkpoints=checkpoints)
