"""The composition root: the one place that chooses concrete backends, authenticators, caches and sinks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.errors import error_body, error_response, json_response
from gateway.api.fastlane import FastLane
from gateway.api.middleware import EdgeMiddleware
from gateway.api.routes import ObjectRoutes
from gateway.api.service_routes import router
from gateway.audit import AuditSink
from gateway.audit.log import AuditLog
from gateway.audit.redis_stream import RedisStreamSink
from gateway.audit.sinks import FileSink, StdoutSink
from gateway.auth import AuthChain, Authenticator, ReplayStore
from gateway.auth.dev import DevAuthenticator
from gateway.auth.oidc import OidcAuthenticator
from gateway.auth.replay import MemoryReplayStore
from gateway.auth.replay_redis import RedisReplayStore
from gateway.auth.vendor import VendorAuthenticator
from gateway.backends import Backend
from gateway.backends.local import LocalBackend
from gateway.cache.memory import MemoryUrlCache
from gateway.cache.redis import RedisUrlCache
from gateway.config import (
    AuditConfig,
    AuthConfig,
    GcsBackend,
    PolicyFile,
    S3Backend,
    default_policy,
    load_policy,
)
from gateway.config import (
    FileSink as FileSinkConfig,
)
from gateway.config import (
    LocalBackend as LocalBackendConfig,
)
from gateway.config import (
    RedisStreamSink as RedisStreamSinkConfig,
)
from gateway.config import (
    StdoutSink as StdoutSinkConfig,
)
from gateway.errors import ConfigError, GatewayError
from gateway.metrics import Metrics
from gateway.policy import compile_policy
from gateway.ratelimit import RateLimiter
from gateway.ratelimit.memory import MemoryRateLimiter
from gateway.ratelimit.redis import RedisRateLimiter
from gateway.redis_client import SharedRedis
from gateway.service import GatewayService, State, StateHolder
from gateway.service.reloader import PolicyReloader
from gateway.settings import Settings

log = logging.getLogger("gateway")


def check_dev_mode(settings: Settings) -> None:
    """Development mode hands a fixed identity to every caller: loopback only, and said loudly."""
    problems = []
    if not settings.dev_mode:
        problems.append("GATEWAY_DEV_PRINCIPAL needs GATEWAY_DEV_MODE=true")
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if not loopback:
        problems.append(f"development mode listens on loopback only, not {settings.host}")
    if problems:
        raise ConfigError("development mode", problems)
    log.warning("DEVELOPMENT MODE: every request without a credential is %s; never run this way in production",
                settings.dev_principal)


class Runtime:
    """Everything one app instance owns, built once at startup and reused by every request."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 registry: CollectorRegistry | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.environ = environ
        self.metrics = Metrics(registry or CollectorRegistry())
        if settings.signing_key:
            self.signing_key = settings.signing_key.encode()
        else:
            self.signing_key = secrets.token_bytes(32)
            log.warning(
                "GATEWAY_SIGNING_KEY is not set; generated a random key. Local-disk URLs will not survive "
                "a restart and will differ between replicas"
            )
        if settings.dev_principal:
            check_dev_mode(settings)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=3.0), follow_redirects=False)
        self.redis: SharedRedis | None = None
        self.replay: ReplayStore = MemoryReplayStore()
        self.limiter: RateLimiter = MemoryRateLimiter()
        shared_cache: RedisUrlCache | None = None
        if settings.redis_url:
            self.redis = SharedRedis.from_settings(settings, on_error=self.metrics.redis_errors.inc)
            shared_cache = RedisUrlCache(self.redis)
            self.replay = RedisReplayStore(self.redis, self.replay, fail_closed=settings.replay_fail_closed,
                                           on_fallback=self.metrics.redis_fallbacks.labels("replay").inc)
            self.limiter = RedisRateLimiter(self.redis, self.limiter,
                                            on_fallback=self.metrics.redis_fallbacks.labels("ratelimit").inc)
        self._authenticators: dict[str, tuple[object, Authenticator]] = {}
        if settings.config is not None:
            policy, raw = load_policy(settings.config)
        else:
            policy, raw = default_policy(settings.local_dir, settings.cors_origins), None
        state = self.build_state(policy, raw, None)
        self.holder = StateHolder(state)
        self.audit = self._audit_log(policy.audit)
        self.service = GatewayService(self.holder, cache=MemoryUrlCache(settings.cache_max_entries),
                                      audit=self.audit, metrics=self.metrics, clock=clock,
                                      shared_cache=shared_cache, limiter=self.limiter,
                                      grant_entries=settings.grant_cache_entries)
        self.reloader: PolicyReloader | None = None
        if settings.config is not None:
            self.reloader = PolicyReloader(settings.config, self.holder, self.build_state, self.metrics,
                                           interval=settings.reload_interval)
            self.reloader.mark_loaded(raw or b"")
        self.metrics.policy_info.set(state.loaded_at)

    # -- building state from a policy -------------------------------------------------------
    def build_state(self, policy: PolicyFile, raw: bytes | None, previous: State | None) -> State:
        """Build everything a policy implies; raise ConfigError listing every problem."""
        problems: list[str] = []
        backends: dict[str, Backend] = {}
        for name, dataset in policy.datasets.items():
            old = previous.backends.get(name) if previous else None
            old_config = previous.policy.source.datasets[name].backend if previous and old else None
            if old is not None and old_config == dataset.backend:
                backends[name] = old  # unchanged: keep its clients, credentials and caches
                continue
            try:
                backends[name] = self.build_backend(name, dataset.backend)
            except ConfigError as exc:
                problems.extend(f"datasets.{name}.backend: {p}" for p in exc.problems)
        try:
            auth = AuthChain(self.build_authenticators(policy.auth))
        except ConfigError as exc:
            problems.extend(f"auth: {p}" for p in exc.problems)
        if problems:
            raise ConfigError(str(self.settings.config or "<embedded default>"), problems)
        cors = frozenset(policy.cors.allow_origins) | frozenset(self.settings.cors_origins)
        return State(compile_policy(policy, raw), backends, auth, cors, loaded_at=self.clock())

    def build_backend(self, dataset: str, config: LocalBackendConfig | S3Backend | GcsBackend) -> Backend:
        match config:
            case LocalBackendConfig():
                return LocalBackend(config, dataset=dataset, base_url=self.settings.base_url(),
                                    signing_key=self.signing_key)
            case S3Backend():
                # Imported here: boto3 costs startup time that local-only deployments should not pay.
                from gateway.backends.s3 import S3Backend as S3

                return S3(config)
            case GcsBackend():
                from gateway.backends.gcs import GcsBackend as Gcs

                return Gcs(config)

    def build_authenticators(self, config: AuthConfig) -> list[Authenticator]:
        """Vendor HMAC first, then OIDC. Unchanged sections keep their authenticator, so that a policy
        reload keeps the JWKS and verified-token caches."""
        authenticators: list[Authenticator] = []
        if self.settings.dev_principal:
            # Last in the chain, so that real credentials are still checked as they would be.
            dev: Authenticator = DevAuthenticator(self.settings.dev_principal, frozenset(self.settings.dev_groups))
        if config.vendors:
            authenticators.append(self._reuse("vendors", config.vendors, lambda: VendorAuthenticator(
                config.vendors, replay=self.replay, clock=self.clock, environ=self.environ)))
        if config.oidc:
            authenticators.append(self._reuse("oidc", config.oidc, lambda: OidcAuthenticator(
                config.oidc, http=self.http, clock=self.clock,
                on_fetch=lambda issuer, result: self.metrics.jwks_fetches.labels(issuer, result).inc())))
        if self.settings.dev_principal:
            authenticators.append(dev)
        return authenticators

    def _reuse(self, name: str, config: object, build: Callable[[], Authenticator]) -> Authenticator:
        cached = self._authenticators.get(name)
        if cached is not None and cached[0] == config:
            return cached[1]
        authenticator = build()
        self._authenticators[name] = (config, authenticator)
        return authenticator

    def _audit_log(self, config: AuditConfig) -> AuditLog:
        sinks: list[AuditSink] = []
        for sink in config.sinks:
            match sink:
                case StdoutSinkConfig():
                    sinks.append(StdoutSink())
                case FileSinkConfig():
                    sinks.append(FileSink(Path(sink.path)))
                case RedisStreamSinkConfig():
                    if self.redis is None:
                        raise ConfigError("audit.sinks", ["kind redis_stream needs GATEWAY_REDIS_URL"])
                    sinks.append(RedisStreamSink(self.redis, sink.stream, sink.maxlen))
        return AuditLog(sinks, max_queue=self.settings.audit_queue_size, fail_closed=config.fail_closed,
                        on_drop=self.metrics.audit_dropped.inc)

    # -- readiness --------------------------------------------------------------------------
    async def readiness(self) -> dict[str, Any]:
        """Ready while the gateway can serve; ``degraded`` when it serves with less than it should."""
        state = self.holder.current
        backends = {name: backend.health() for name, backend in state.backends.items()}
        healthy = all(bool(h.get("ok")) for h in backends.values())
        redis = "disabled"
        redis_details = None
        if self.redis is not None:
            # One bounded PING per probe; it is also what closes the breaker again after an outage.
            redis_details = await self.redis.readiness()
            redis = redis_details["state"]
        degraded = not healthy or self.holder.last_reload_error is not None or redis == "down"
        return {
            "status": "degraded" if degraded else "ready",
            "policy_version": state.version,
            "policy_loaded_at": state.loaded_at,
            "last_reload_error": self.holder.last_reload_error,
            "last_reload_at": self.holder.last_reload_at,
            "backends": backends,
            "cache": {"memory": "ok", "redis": redis},
            "redis": redis_details,
        }

    async def flush_metrics_forever(self, interval: float = 1.0) -> None:
        """Add the hot path's tallied counts to the Prometheus metrics, once a second."""
        while True:
            await asyncio.sleep(interval)
            self.metrics.tally.flush()

    async def aclose(self) -> None:
        self.metrics.tally.flush()
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.audit.close()


class GatewayApp:
    """The ASGI entry point, with its runtime at hand for the CLI and the tests."""

    def __init__(self, asgi: ASGIApp, runtime: Runtime) -> None:
        self.asgi = asgi
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time,
               registry: CollectorRegistry | None = None, environ: Mapping[str, str] | None = None) -> GatewayApp:
    """Build the ASGI app. Raises ConfigError, listing every problem, when the policy is invalid."""
    runtime = Runtime(settings, clock=clock, registry=registry, environ=environ)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if runtime.redis is not None:
            await runtime.redis.start()  # bounded; says why and serves degraded when Redis is unusable
        task = asyncio.create_task(runtime.reloader.run()) if runtime.reloader else None
        flusher = asyncio.create_task(runtime.flush_metrics_forever())
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            # logrotate sends SIGHUP: reopen the audit file (only possible in the main thread).
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.audit.reopen)
        try:
            yield
        finally:
            for background in (task, flusher):
                if background is not None:
                    background.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await background
            await runtime.aclose()

    api = FastAPI(title="URL-signing gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    api.state.runtime = runtime
    api.include_router(router)

    @api.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        return error_response(exc, request.state.request_id)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return json_response(error_body(code, str(exc.detail).lower(), request.state.request_id),
                             exc.status_code, dict(exc.headers or {}))

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response(error_body("bad_request", "the request is malformed", request.state.request_id), 400)

    holder = runtime.holder
    asgi: ASGIApp = ObjectRoutes(api, runtime)
    edge = EdgeMiddleware(asgi, runtime.metrics, origins=lambda: holder.current.cors_origins,
                          max_age=lambda: int(holder.current.policy.source.cors.max_age),
                          max_concurrency=settings.max_concurrency)
    return GatewayApp(FastLane(edge, runtime, edge), runtime)


def app_from_env() -> GatewayApp:
    """Factory for multi-worker serving: each worker reads the same GATEWAY_* environment."""
    from gateway import logs

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings)
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Move everything built at startup (boto3's models, the compiled policy, the app) out of the
    cyclic garbage collector's reach: it never becomes garbage, and scanning it on every full
    collection cost the request path milliseconds at a time. For servers only, once, at startup."""
    gc.collect()
    gc.freeze()
