"""The gateway's use cases: sign one key, sign a batch, resolve a local-disk URL."""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from gateway.audit.log import AuditLog
from gateway.auth import AuthRequest
from gateway.backends import Backend, FileSource
from gateway.cache import SharedUrlCache, UrlCache
from gateway.errors import (
    Forbidden,
    GatewayError,
    InvalidKey,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    UnknownDataset,
)
from gateway.keys import canonical_key, validate_key
from gateway.metrics import Metrics
from gateway.models import AuditRecord, Decision, DenyReason, IPAddress, Principal, RequestContext, SignedUrl
from gateway.policy import CompiledDataset
from gateway.ratelimit import RateLimiter
from gateway.redis_client import RedisDown
from gateway.service.grants import Grant, Grants, Sessions
from gateway.service.state import State, StateHolder


@dataclass(frozen=True, slots=True)
class BatchItem:
    key: str
    url: SignedUrl | None = None
    error: str | None = None
    detail: str | None = None


class GatewayService:
    def __init__(
        self,
        holder: StateHolder,
        *,
        cache: UrlCache,
        audit: AuditLog,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        shared_cache: SharedUrlCache | None = None,
        limiter: RateLimiter | None = None,
        grant_entries: int = 0,
    ) -> None:
        self.holder = holder
        self.grants = Grants(holder, clock, grant_entries)
        self.sessions = Sessions(holder, clock, grant_entries)
        self.cache = cache
        # Bound once: a labels() lookup per request costs more than the cache hit it counts.
        self._memory_hit = metrics.cache_requests.labels("memory", "hit")
        self._memory_miss = metrics.cache_requests.labels("memory", "miss")
        self._grant_hit = metrics.cache_requests.labels("grant", "hit")
        self._allowed = metrics.decisions.labels("allow", "rule")
        self._tally = metrics.tally
        self._sign_seconds = functools.lru_cache(maxsize=None)(metrics.sign_seconds.labels)
        self.shared_cache = shared_cache
        self.limiter = limiter
        self.audit = audit
        self.metrics = metrics
        self.clock = clock

    # -- authentication -------------------------------------------------------------------
    async def authenticate(self, request: AuthRequest, ctx: RequestContext) -> Principal:
        try:
            return await self.holder.current.auth.authenticate(request)
        except Unauthenticated as exc:
            self.metrics.auth_failures.labels(exc.scheme.lower(), exc.reason).inc()
            await self._audit(ctx, "authenticate", None, None, Decision(False, reason=DenyReason.UNAUTHENTICATED),
                              exc.status, started=time.perf_counter())
            raise

    # -- signing ----------------------------------------------------------------------------
    async def sign(self, ctx: RequestContext, dataset: str, raw_key: str | bytes, *, action: str,
                   status: int = 302, grant_key: Hashable | None = None) -> SignedUrl:
        """Authorize and sign one key. ``raw_key`` is still percent-encoded, as it came in the path.

        With ``grant_key`` (a redirect; the caller vouches that the key covers every input of the
        decision), an allowed answer is remembered as a :class:`Grant` under that key."""
        started = time.perf_counter()
        state = self.holder.current
        ds = await self._dataset(ctx, state, dataset, action, started)
        await self._rate_limit(ctx, ds, 1, action, started)
        try:
            key = canonical_key(raw_key)
        except InvalidKey as exc:
            await self._deny(ctx, action, dataset, None, DenyReason.INVALID_KEY, exc, started)
        decision = ds.decide(ctx.principal, ctx.client_ip, key)
        if decision.allowed:
            self._tally.inc(self._allowed)
        else:
            self.metrics.decisions.labels("deny", decision.reason or "none").inc()
            refusal = _refusal(ctx, ds, decision)
            await self._audit(ctx, action, dataset, key, decision, refusal.status, started=started)
            raise refusal
        try:
            url, hits = await self._sign_one(state, ds, key)
        except GatewayError as exc:
            await self._audit(ctx, action, dataset, key, decision, exc.status, started=started)
            raise
        await self._audit(ctx, action, dataset, key, decision, status, started=started,
                          cache="hit" if hits else "miss")
        if grant_key is not None and hits:  # a repeat: one-off requests (cold keys) are not worth keeping
            self.grants.remember(grant_key, state, ds, key, decision.rule, ctx.principal, _ip_text(ctx.client_ip), url)
        return url

    # -- grants: the hot path ---------------------------------------------------------------
    async def regrant(self, grant: Grant, request_id: str, user_agent: str, started: float) -> None:
        """Count and audit one more redirect answered from a grant (a cache hit, like any other)."""
        tally = self._tally
        tally.inc(self._allowed)
        tally.inc(self._grant_hit)
        await self.audit.record(AuditRecord(
            self.clock(), request_id, "redirect", grant.dataset, grant.key, "allow", grant.rule, None, 302,
            grant.client_ip, user_agent[:256], grant.principal, "hit", round((time.perf_counter() - started) * 1000, 3),
        ))

    async def sign_batch(self, ctx: RequestContext, dataset: str, keys: Sequence[Any]) -> list[BatchItem]:
        """Sign many keys in one pass. One bad key never fails the batch; results keep the order."""
        started = time.perf_counter()
        state = self.holder.current
        ds = await self._dataset(ctx, state, dataset, "sign_batch", started)
        limit = state.policy.source.defaults.batch_limit
        if len(keys) > limit:
            raise PayloadTooLarge(f"a batch holds at most {limit} keys; got {len(keys)}")
        await self._rate_limit(ctx, ds, len(keys), "sign_batch", started)  # every key counts
        probe = ds.decide(ctx.principal, ctx.client_ip, "")
        if not probe.allowed and probe.reason is not DenyReason.KEY_NOT_ALLOWED:
            # No rule admits this caller at all (rules do not depend on the key): refuse the batch.
            refusal = _refusal(ctx, ds, probe)
            await self._audit(ctx, "sign_batch", dataset, None, probe, refusal.status, started=started)
            raise refusal
        results: list[BatchItem | None] = [None] * len(keys)
        allowed: list[tuple[int, str]] = []
        denied = 0
        # The rules do not depend on the key (probe above): per key, only the key and its globs are checked.
        key_allowed = ds.key_pattern.match
        for i, raw in enumerate(keys):
            if not isinstance(raw, str):
                results[i] = BatchItem(str(raw)[:100], error="invalid_key", detail="a key must be a string")
                continue
            try:
                key = validate_key(raw)
            except InvalidKey as exc:
                results[i] = BatchItem(raw, error=exc.code, detail=exc.detail)
                continue
            if key_allowed(key):
                allowed.append((i, key))
            else:
                denied += 1
                results[i] = BatchItem(key, error="forbidden", detail=_deny_detail(probe))
        self._tally.inc(self._allowed, len(allowed))
        self.metrics.decisions.labels("deny", "batch").inc(len(keys) - len(allowed))
        hits = 0
        if allowed:
            urls, hits = await self._sign(state, ds, [key for _, key in allowed])
            for (i, key), url in zip(allowed, urls, strict=True):
                results[i] = BatchItem(key, url=url)
        summary = Decision(bool(allowed), rule=probe.rule, reason=None if allowed else DenyReason.KEY_NOT_ALLOWED)
        await self._audit(ctx, "sign_batch", dataset, None, summary, 200, started=started,
                          cache=f"{hits}/{len(allowed)}", keys=[k for _, k in allowed], denied=denied)
        return [item for item in results if item is not None]

    async def _sign_one(self, state: State, ds: CompiledDataset, key: str) -> tuple[SignedUrl, int]:
        """One key, the request path's case, without the batch bookkeeping (Redis-backed levels
        excepted: they go through :meth:`_sign`)."""
        backend = state.backends[ds.name]
        if backend.shared_cache:
            (url,), hits = await self._sign(state, ds, [key])
            return url, hits
        now, ttl, signed_at, min_life, prefix = self._bucket(state, ds)
        cached = self.cache.get(prefix + key, now=now, min_remaining=min_life)
        if cached is not None:
            self._tally.inc(self._memory_hit)
            return cached, 1
        self._tally.inc(self._memory_miss)
        t0 = time.perf_counter()
        try:
            (url,) = await backend.sign([key], signed_at=signed_at, expires_in=ttl)
        except Exception:
            self.metrics.sign_errors.labels(backend.kind).inc()
            raise
        self._tally.observe(self._sign_seconds(backend.kind), time.perf_counter() - t0)
        self.cache.put(prefix + key, url)
        return url, 0

    def _bucket(self, state: State, ds: CompiledDataset) -> tuple[float, int, int, float, str]:
        """(now, ttl, signed_at, minimum life, cache-key prefix) for the current time bucket."""
        ttl = int(ds.url_ttl)
        share = state.policy.source.defaults.min_remaining
        width = max(1, int(ttl * (1 - share)))
        now = self.clock()
        signed_at = int(now // width * width)
        return now, ttl, signed_at, ttl * share, f"{state.version}\x00{ds.name}\x00{signed_at}\x00{ttl}\x00"

    async def _sign(self, state: State, ds: CompiledDataset, keys: list[str]) -> tuple[list[SignedUrl], int]:
        """Cache, then backend. URLs are bucketed in time so that equal inputs give equal URLs."""
        backend: Backend = state.backends[ds.name]
        now, ttl, signed_at, min_life, prefix = self._bucket(state, ds)
        urls: list[SignedUrl | None] = [self.cache.get(prefix + k, now=now, min_remaining=min_life) for k in keys]
        missing = [i for i, url in enumerate(urls) if url is None]
        hits = len(keys) - len(missing)
        self._tally.inc(self._memory_hit, hits)
        if missing:
            self._tally.inc(self._memory_miss, len(missing))
        # Redis only where signing costs more than a round trip (RSA, signBlob); see docs/cache.md.
        shared = self.shared_cache if backend.shared_cache else None
        if missing and shared is not None:
            try:
                found = await shared.get_many([prefix + keys[i] for i in missing], now=now, min_remaining=min_life)
            except RedisDown:
                self.metrics.cache_requests.labels("redis", "error").inc(len(missing))
                self.metrics.redis_fallbacks.labels("cache").inc()
            else:
                still = []
                for i, url in zip(missing, found, strict=True):
                    if url is None:
                        still.append(i)
                    else:
                        urls[i] = url
                        self.cache.put(prefix + keys[i], url)
                self.metrics.cache_requests.labels("redis", "hit").inc(len(missing) - len(still))
                self.metrics.cache_requests.labels("redis", "miss").inc(len(still))
                hits += len(missing) - len(still)
                missing = still
        if missing:
            t0 = time.perf_counter()
            try:
                fresh = await backend.sign([keys[i] for i in missing], signed_at=signed_at, expires_in=ttl)
            except Exception:
                self.metrics.sign_errors.labels(backend.kind).inc()
                raise
            self._tally.observe(self._sign_seconds(backend.kind), time.perf_counter() - t0)
            for i, url in zip(missing, fresh, strict=True):
                urls[i] = url
                self.cache.put(prefix + keys[i], url)
            if shared is not None:
                items = [(prefix + keys[i], url) for i, url in zip(missing, fresh, strict=True)]
                try:
                    await shared.put_many(items, now=now, min_remaining=min_life)
                except RedisDown:
                    self.metrics.redis_fallbacks.labels("cache").inc()
        return [u for u in urls if u is not None], hits

    def cache_max_age(self, url: SignedUrl) -> int:
        """Browsers may keep the redirect until the time bucket ends, never past the URL's life."""
        share = self.holder.current.policy.source.defaults.min_remaining
        remaining = url.expires_at - self.clock()
        return max(0, int(min(remaining - url.lifetime * share, remaining - 1)))

    # -- local-disk bytes -------------------------------------------------------------------
    async def resolve_local(self, ctx: RequestContext, dataset: str, raw_key: str | bytes,
                            exp: str, sig: str) -> Path:
        started = time.perf_counter()
        state = self.holder.current
        ds = await self._dataset(ctx, state, dataset, "fetch", started)
        backend = state.backends[ds.name]
        if not isinstance(backend, FileSource):
            raise UnknownDataset(f"dataset {dataset!r} does not serve files from this gateway")
        try:
            key = canonical_key(raw_key)
            path = backend.resolve(key, exp=exp, sig=sig, now=self.clock())
        except InvalidKey as exc:
            await self._deny(ctx, "fetch", dataset, None, DenyReason.INVALID_KEY, exc, started)
        except Forbidden as exc:
            reason = DenyReason(exc.reason) if exc.reason in DenyReason.__members__.values() else None
            await self._deny(ctx, "fetch", dataset, None, reason or DenyReason.BAD_SIGNATURE, exc, started)
        except GatewayError as exc:
            await self._audit(ctx, "fetch", dataset, key, Decision(True, rule="signed_url"), exc.status,
                              started=started)
            raise
        await self._audit(ctx, "fetch", dataset, key, Decision(True, rule="signed_url"), 200, started=started)
        return path

    # -- helpers ----------------------------------------------------------------------------
    async def _rate_limit(self, ctx: RequestContext, ds: CompiledDataset, cost: int, action: str,
                          started: float) -> None:
        """Per principal and per client IP, as the dataset configures; spent before any signing."""
        limit = ds.config.rate_limit
        if limit is None or self.limiter is None:
            return
        if cost > limit.requests:
            # It could never fit, however long the client waited: no Retry-After to obey.
            raise PayloadTooLarge(f"this batch has {cost} keys, more than the dataset's rate limit allows in "
                                  f"{limit.per:g}s ({limit.requests}); split it")
        subjects = [f"{ds.name}:ip:{ctx.client_ip}"]
        if not ctx.principal.anonymous:
            who = f"{ctx.principal.method}|{ctx.principal.issuer}|{ctx.principal.subject}"
            # Hashed: Redis keys should not carry emails or subjects.
            subjects.append(f"{ds.name}:p:{hashlib.sha256(who.encode()).hexdigest()[:20]}")
        for subject in subjects:
            verdict = await self.limiter.hit(subject, cost=cost, limit=limit.requests, period=limit.per)
            if not verdict.allowed:
                self.metrics.rate_limited.inc()
                exc = RateLimited(f"over the limit of {limit.requests} requests per {limit.per:g}s; retry later",
                                  retry_after=max(1, math.ceil(verdict.retry_after)))
                await self._deny(ctx, action, ds.name, None, DenyReason.RATE_LIMITED, exc, started)

    async def _dataset(self, ctx: RequestContext, state: State, name: str, action: str,
                       started: float) -> CompiledDataset:
        ds = state.policy.dataset(name)
        if ds is None:
            exc = UnknownDataset(f"there is no dataset named {name[:64]!r}")
            await self._deny(ctx, action, name[:64], None, DenyReason.UNKNOWN_DATASET, exc, started)
        return ds

    async def _deny(self, ctx: RequestContext, action: str, dataset: str, key: str | None,
                    reason: DenyReason, exc: GatewayError, started: float) -> NoReturn:
        self.metrics.decisions.labels("deny", reason).inc()
        await self._audit(ctx, action, dataset, key, Decision(False, reason=reason), exc.status, started=started)
        raise exc

    async def _audit(self, ctx: RequestContext, action: str, dataset: str | None, key: str | None,
                     decision: Decision, status: int, *, started: float, cache: str | None = None,
                     keys: list[str] | None = None, denied: int | None = None) -> None:
        # Positional: this runs for every request, and keyword arguments cost a dataclass more.
        record = AuditRecord(
            self.clock(), ctx.request_id, action, dataset, key, "allow" if decision.allowed else "deny",
            decision.rule, str(decision.reason) if decision.reason else None, status, _ip_text(ctx.client_ip),
            ctx.user_agent[:256], ctx.principal, cache, round((time.perf_counter() - started) * 1000, 3), keys,
            denied,
        )
        await self.audit.record(record)


@functools.lru_cache(maxsize=8192)
def _ip_text(address: IPAddress) -> str:
    return str(address)  # ipaddress formats in Python, for every record: cache it (addresses repeat)


def _refusal(ctx: RequestContext, ds: CompiledDataset, decision: Decision) -> GatewayError:
    """403, except that a caller without a credential, where a credential could help, gets 401."""
    needs_credential = any(not rule.anonymous for rule in ds.config.rules)
    if ctx.principal.anonymous and needs_credential and decision.reason is DenyReason.NO_RULE_MATCHED:
        return Unauthenticated("this dataset needs a credential: a bearer token or a signed vendor request",
                               reason="missing")
    return Forbidden(_deny_detail(decision), reason=decision.reason or DenyReason.NO_RULE_MATCHED)


def _deny_detail(decision: Decision) -> str:
    if decision.reason is DenyReason.KEY_NOT_ALLOWED:
        return "the policy does not allow this key in this dataset"
    if decision.reason is DenyReason.NO_RULES:
        return "this dataset has no rules, so nobody may read it"
    return "no rule of this dataset allows this request"
