"""Everything one app instance owns, built once at startup and reused by every request (part of
the composition root): metrics, the shared Redis and its stores, the audit log, the service, the
policy reloader; and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from gateway.app.build import StateBuilder, audit_log, check_dev_mode
from gateway.app.redis import shared_redis
from gateway.auth import ReplayStore
from gateway.auth.cookies import SessionKeys
from gateway.auth.replay import MemoryReplayStore
from gateway.auth.replay_redis import RedisReplayStore
from gateway.auth.session_redis import RedisSessionStore
from gateway.auth.sessions import CookieSessionStore, SessionStore
from gateway.backends.http_pool import UpstreamPool
from gateway.cache.memory import MemoryUrlCache
from gateway.cache.redis import RedisUrlCache
from gateway.config import default_policy, load_policy
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.ratelimit.memory import MemoryRateLimiter
from gateway.ratelimit.redis import RedisRateLimiter
from gateway.redis.client import SharedRedis
from gateway.service import (
    Gate,
    GatewayUrls,
    Listings,
    LocalReads,
    ProxyReads,
    Redirects,
    SignInService,
    StateHolder,
    UseCases,
)
from gateway.service.readiness import readiness
from gateway.service.reloader import PolicyReloader
from gateway.service.signing import UrlSigner
from gateway.settings import Settings

log = logging.getLogger("gateway")


class Runtime:
    """Builds the gateway's parts from the settings; raises ConfigError, listing every problem,
    when the policy or the settings cannot work."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 registry: CollectorRegistry | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics(registry or CollectorRegistry())
        if settings.signing_key:
            signing_key = settings.signing_key.encode()
        else:
            signing_key = secrets.token_bytes(32)
            log.warning(
                "GATEWAY_SIGNING_KEY is not set; generated a random key. Local-disk URLs will not survive "
                "a restart and will differ between replicas"
            )
        if settings.dev_principal:
            check_dev_mode(settings)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=3.0), follow_redirects=False)
        self.redis: SharedRedis | None = shared_redis(settings, on_error=self.metrics.redis_errors.inc,
                                                      environ=environ)
        replay: ReplayStore = MemoryReplayStore()
        limiter: RateLimiter = MemoryRateLimiter()
        shared_cache: RedisUrlCache | None = None
        if self.redis is not None:
            shared_cache = RedisUrlCache(self.redis)
            replay = RedisReplayStore(self.redis, replay, fail_closed=settings.replay_fail_closed,
                                      on_fallback=self.metrics.redis_fallbacks.labels("replay").inc)
            limiter = RedisRateLimiter(self.redis, limiter,
                                       on_fallback=self.metrics.redis_fallbacks.labels("ratelimit").inc)
        # Proxy delivery's storage connections: one pool for the process, closed in aclose().
        self.pool = UpstreamPool(read_timeout=settings.upstream_timeout,
                                 on_connect=self.metrics.upstream_connections.inc)
        # Browser sessions: in Redis when there is one (a logout reaches every replica), else sealed
        # into the cookie (a logout is remembered by this process).
        keys = SessionKeys(settings.session_key_bytes()) if settings.session_keys else None
        sessions: SessionStore | None = None
        if keys is not None:
            sessions = (RedisSessionStore(keys, self.redis, clock=clock) if self.redis is not None
                        else CookieSessionStore(keys))
        self.build_state = StateBuilder(settings, signing_key=signing_key, http=self.http, replay=replay,
                                        metrics=self.metrics, clock=clock, environ=environ, pool=self.pool,
                                        sessions=sessions, keys=keys)
        if settings.config is not None:
            policy, raw = load_policy(settings.config)
        else:
            policy, raw = default_policy(settings.local_dir, settings.cors_origins), None
        state = self.build_state(policy, raw, None)
        self.holder = StateHolder(state)
        self.audit = audit_log(policy.audit, settings, self.metrics, self.redis)
        urls = GatewayUrls(signing_key, settings.base_url())  # proxy datasets' JSON and batch answers
        self.gate = Gate(metrics=self.metrics, limiter=limiter, gateway_urls=urls, clock=clock)
        self.signer = UrlSigner(cache=MemoryUrlCache(settings.cache_max_entries), shared_cache=shared_cache,
                                metrics=self.metrics, clock=clock)
        self.use = UseCases(
            holder=self.holder, audit=self.audit, gate=self.gate,
            redirects=Redirects(self.gate, self.signer, gateway_urls=urls, clock=clock),
            proxy=ProxyReads(self.gate, clock=clock), local=LocalReads(self.gate, clock=clock),
            signin=SignInService(keys=keys, store=sessions, replay=replay, metrics=self.metrics,
                                 public_url=settings.base_url(), clock=clock),
            listings=Listings(self.gate, signing_key=signing_key, base_url=settings.base_url()))
        self.reloader: PolicyReloader | None = None
        if settings.config is not None:
            self.reloader = PolicyReloader(settings.config, self.holder, self.build_state, self.metrics,
                                           interval=settings.reload_interval)
            self.reloader.mark_loaded(raw or b"")
        self.metrics.policy_info.set(state.loaded_at)

    async def readiness(self) -> dict[str, Any]:
        return await readiness(self.holder, self.redis)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: object = None) -> AsyncIterator[None]:
        """The background work of a serving process: policy reloads, the metrics flush, SIGHUP."""
        if self.redis is not None:
            await self.redis.start()  # bounded; says why and serves degraded when Redis is unusable
        tasks = [asyncio.create_task(self._flush_metrics_forever())]
        if self.reloader is not None:
            tasks.append(asyncio.create_task(self.reloader.run()))
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            # logrotate sends SIGHUP: reopen the audit file (only possible in the main thread).
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.audit.reopen)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.aclose()

    async def _flush_metrics_forever(self, interval: float = 1.0) -> None:
        """Add the request path's tallied counts to the Prometheus metrics, once a second."""
        while True:
            await asyncio.sleep(interval)
            self.metrics.tally.flush()

    async def aclose(self) -> None:
        self.metrics.tally.flush()
        await self.http.aclose()
        await self.pool.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.audit.close()
