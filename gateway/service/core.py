"""The gateway's use cases: authenticate, sign one key, sign a batch, resolve a local-disk URL.

Every decision, allowed or denied, leaves exactly one audit record, written here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from gateway.audit.log import AuditLog
from gateway.auth import AuthRequest
from gateway.backends import FileSource
from gateway.cache import SharedUrlCache, UrlCache
from gateway.errors import (
    CrossSiteRefused,
    Forbidden,
    GatewayError,
    InvalidKey,
    PayloadTooLarge,
    Unauthenticated,
    Unavailable,
    UnknownDataset,
)
from gateway.keys import canonical_key, validate_key
from gateway.metrics import Metrics
from gateway.models import AuditRecord, Decision, DenyReason, RequestContext, SignedUrl
from gateway.policy import CompiledDataset
from gateway.ratelimit import RateLimiter
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.limits import RateLimits
from gateway.service.refusals import anonymous_refusal, deny_detail, ip_text, refusal
from gateway.service.signing import UrlSigner
from gateway.service.state import State, StateHolder


@dataclass(frozen=True, slots=True)
class BatchItem:
    key: str | None  # None for a key that is not a string at all
    url: SignedUrl | None = None
    error: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A local-disk object the URL's signature admits, and how long a browser may cache it."""

    path: Path
    max_age: int
    etag_key: bytes


class GatewayService:
    """Authenticate, decide, sign, audit: the same steps for the HTTP routes, the CLI and the tests."""

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
        gateway_urls: GatewayUrls | None = None,
    ) -> None:
        self.holder = holder
        self.gateway_urls = gateway_urls
        self.signer = UrlSigner(cache=cache, shared_cache=shared_cache, metrics=metrics, clock=clock)
        self.limits = RateLimits(limiter, metrics)
        self.audit = audit
        self.metrics = metrics
        self.clock = clock
        self._tally = metrics.tally
        self._allowed = metrics.decisions.labels("allow", "rule")

    @property
    def batch_limit(self) -> int:
        return self.holder.current.policy.source.defaults.batch_limit

    # -- authentication -------------------------------------------------------------------
    async def authenticate(self, request: AuthRequest, ctx: RequestContext) -> RequestContext:
        """``ctx`` (anonymous so far), given the principal the request's credential proves; a bad
        credential is audited and raised."""
        try:
            principal = await self.holder.current.auth.authenticate(request)
        except Unauthenticated as exc:
            self.metrics.auth_failures.labels(exc.scheme.lower(), exc.reason).inc()
            await self._audit(ctx, "authenticate", None, None, _UNAUTHENTICATED, exc.status,
                              started=time.perf_counter())
            raise
        except CrossSiteRefused as exc:  # a browser session sent by a page that is not an embedder
            self.metrics.auth_failures.labels("session", exc.reason).inc()
            await self._audit(ctx, "authenticate", None, None, _CROSS_SITE, exc.status, started=time.perf_counter())
            raise
        ctx.principal = principal
        return ctx

    # -- signing ----------------------------------------------------------------------------
    async def sign(self, ctx: RequestContext, dataset: str, raw_key: str | bytes, *, action: str,
                   status: int = 302) -> tuple[SignedUrl, int]:
        """Authorize and sign one key; returns the URL and how long a browser may keep the answer.
        ``raw_key`` is still percent-encoded, as it came in the path.

        The request path's case: written so that a cached URL costs no coroutine but the audit
        record's (and none at all while audit is not fail-closed)."""
        started = time.perf_counter()
        state = self.holder.current
        ds = state.policy.datasets.get(dataset)
        if ds is None:
            await self._unknown_dataset(ctx, dataset, action, started)
        if ds.config.rate_limit is not None:
            await self._rate_limit(ctx, ds, 1, action, started)
        try:
            key = canonical_key(raw_key, ds.max_key_bytes)
        except InvalidKey as exc:
            await self._deny(ctx, action, dataset, None, DenyReason.INVALID_KEY, exc, started)
        decision = ds.decide(ctx.principal, ctx.client_ip, key)
        if not decision.allowed:
            await self.refused(ctx, action, ds, key, decision, started)
        self._tally.inc(self._allowed)
        cache: str | None = "hit"
        url: SignedUrl | None
        if ds.proxy:
            url, cache = self._gateway_urls(ctx, ds, [key])[0], None
        elif (url := self.signer.cached(state, ds, key)) is None:
            cache = "miss"
            try:
                url = await self.signer.one(state, ds, key)
            except GatewayError as exc:
                await self._audit(ctx, action, dataset, key, decision, exc.status, started=started)
                raise
        record = self._record(ctx, action, dataset, key, decision, status, started, cache)
        if self.audit.fail_closed:
            await self.audit.emit_confirmed(record)
        else:
            self.audit.emit(record)
        return url, self.signer.max_age(ds, url)

    async def sign_batch(self, ctx: RequestContext, dataset: str, keys: Sequence[Any]) -> list[BatchItem]:
        """Sign many keys in one pass. One bad key never fails the batch; results keep the order."""
        started = time.perf_counter()
        state = self.holder.current
        ds = await self._dataset(ctx, state, dataset, "sign_batch", started)
        limit = state.policy.source.defaults.batch_limit
        if len(keys) > limit:  # the HTTP route checks it before reading the keys; callers of the service may not
            too_many = PayloadTooLarge(f"a batch holds at most {limit} keys; got {len(keys)}")
            await self._deny(ctx, "sign_batch", dataset, None, DenyReason.BAD_REQUEST, too_many, started)
        await self._rate_limit(ctx, ds, len(keys), "sign_batch", started)  # every key counts
        probe = ds.decide(ctx.principal, ctx.client_ip, "")
        if not probe.allowed and probe.reason is not DenyReason.KEY_NOT_ALLOWED:
            # No rule admits this caller at all (rules do not depend on the key): refuse the batch.
            await self.refused(ctx, "sign_batch", ds, None, probe, started)
        results: list[BatchItem | None] = [None] * len(keys)
        allowed: list[tuple[int, str]] = []
        denied = 0
        # The rules do not depend on the key (probe above): per key, only the key and its globs are checked.
        key_allowed = ds.key_pattern.match
        max_bytes = ds.max_key_bytes
        for i, raw in enumerate(keys):
            if not isinstance(raw, str):
                # Never the value itself, nor its Python text: it may be anything, nested anyhow.
                detail = f"key {i} is {_json_type(raw)}, not a string"
                results[i] = BatchItem(None, error="invalid_key", detail=detail)
                continue
            try:
                key = validate_key(raw, max_bytes)
            except InvalidKey as exc:
                # A lone surrogate ("\ud800") cannot be written back as JSON: show it replaced.
                shown = raw.encode("utf-16", "surrogatepass").decode("utf-16", "replace")[:1100]
                results[i] = BatchItem(shown, error=exc.code, detail=exc.detail)
                continue
            if key_allowed(key):
                allowed.append((i, key))
            else:
                denied += 1
                results[i] = BatchItem(key, error="forbidden", detail=deny_detail(probe))
        self._tally.inc(self._allowed, len(allowed))
        self.metrics.decisions.labels("deny", "batch").inc(len(keys) - len(allowed))
        hits = 0
        if allowed:
            wanted = [key for _, key in allowed]
            urls, hits = (self._gateway_urls(ctx, ds, wanted), 0) if ds.proxy else await self.signer.many(
                state, ds, wanted)
            for (i, key), url in zip(allowed, urls, strict=True):
                results[i] = BatchItem(key, url=url)
        summary = Decision(bool(allowed), rule=probe.rule, reason=None if allowed else DenyReason.KEY_NOT_ALLOWED)
        await self._audit(ctx, "sign_batch", dataset, None, summary, 200, started=started,
                          cache=f"{hits}/{len(allowed)}", keys=[k for _, k in allowed], denied=denied)
        return [item for item in results if item is not None]

    async def refuse(self, ctx: RequestContext, action: str, exc: GatewayError) -> None:
        """Audit a request refused before any decision, because it could not be read."""
        self.metrics.decisions.labels("deny", DenyReason.BAD_REQUEST).inc()
        await self._audit(ctx, action, None, None, _BAD_REQUEST, exc.status, started=time.perf_counter())

    # -- local-disk bytes -------------------------------------------------------------------
    async def resolve_local(self, ctx: RequestContext, dataset: str, raw_key: str | bytes,
                            exp: str, sig: str) -> LocalFile:
        """The file a local-disk URL names, once its own signature is checked (it is the credential)."""
        started = time.perf_counter()
        state = self.holder.current
        ds = await self._dataset(ctx, state, dataset, "fetch", started)
        backend = state.backends[ds.name]
        if not isinstance(backend, FileSource):
            raise UnknownDataset(f"dataset {dataset!r} does not serve files from this gateway")
        try:
            key = canonical_key(raw_key, ds.max_key_bytes)
            now = self.clock()
            path = backend.resolve(key, exp=exp, sig=sig, now=now)
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
        return LocalFile(path, max(0, int(exp) - int(now)), backend.etag_key)

    # -- helpers ----------------------------------------------------------------------------
    async def refused(self, ctx: RequestContext, action: str, ds: CompiledDataset, key: str | None,
                      decision: Decision, started: float) -> NoReturn:
        """The policy said no: counted, audited, and raised as what this caller may hear (every
        route that decides refuses here)."""
        self.metrics.decisions.labels("deny", decision.reason or "none").inc()
        refused = refusal(ctx, ds, decision, sign_in=bool(self.holder.current.browsers))
        await self._audit(ctx, action, ds.name, key, decision, refused.status, started=started)
        raise refused

    def _gateway_urls(self, ctx: RequestContext, ds: CompiledDataset, keys: list[str]) -> list[SignedUrl]:
        """A proxy dataset's URLs: the gateway's own, bound to this client's address (an HMAC each:
        nothing worth caching). See gateway/service/gateway_urls.py."""
        if self.gateway_urls is None:
            raise Unavailable("this gateway has no signing key for proxy URLs")
        signed_at = int(self.clock() // ds.bucket * ds.bucket)
        return self.gateway_urls.sign(ds.name, keys, ctx.client_text or ip_text(ctx.client_ip),
                                      signed_at=signed_at, expires_in=ds.ttl)

    async def _rate_limit(self, ctx: RequestContext, ds: CompiledDataset, cost: int, action: str,
                          started: float) -> None:
        limited = await self.limits.spend(ctx, ds, cost)
        if limited is not None:
            await self._deny(ctx, action, ds.name, None, DenyReason.RATE_LIMITED, limited, started)

    async def _dataset(self, ctx: RequestContext, state: State, name: str, action: str,
                       started: float) -> CompiledDataset:
        ds = state.policy.dataset(name)
        if ds is None:
            await self._unknown_dataset(ctx, name, action, started)
        return ds

    async def _unknown_dataset(self, ctx: RequestContext, name: str, action: str, started: float) -> NoReturn:
        exc: GatewayError = UnknownDataset(f"there is no dataset named {name[:64]!r}")
        if ctx.principal.anonymous:
            exc = anonymous_refusal(sign_in=bool(self.holder.current.browsers))
        await self._deny(ctx, action, name[:64], None, DenyReason.UNKNOWN_DATASET, exc, started)

    async def _deny(self, ctx: RequestContext, action: str, dataset: str, key: str | None,
                    reason: DenyReason, exc: GatewayError, started: float) -> NoReturn:
        self.metrics.decisions.labels("deny", reason).inc()
        await self._audit(ctx, action, dataset, key, Decision(False, reason=reason), exc.status, started=started)
        raise exc

    async def _audit(self, ctx: RequestContext, action: str, dataset: str | None, key: str | None,
                     decision: Decision, status: int, *, started: float, cache: str | None = None,
                     keys: list[str] | None = None, denied: int | None = None) -> None:
        await self.audit.record(self._record(ctx, action, dataset, key, decision, status, started, cache, keys,
                                             denied))

    def _record(self, ctx: RequestContext, action: str, dataset: str | None, key: str | None, decision: Decision,
                status: int, started: float, cache: str | None = None, keys: list[str] | None = None,
                denied: int | None = None) -> AuditRecord:
        # Positional: this runs for every request, and keyword arguments cost a dataclass more.
        return AuditRecord(
            self.clock(), ctx.request_id, action, dataset, key, "allow" if decision.allowed else "deny",
            decision.rule, decision.reason, status, ctx.client_text or ip_text(ctx.client_ip),
            ctx.user_agent[:256], ctx.principal, cache, round((time.perf_counter() - started) * 1000, 3), keys,
            denied,
        )


_UNAUTHENTICATED = Decision(False, reason=DenyReason.UNAUTHENTICATED)
_BAD_REQUEST = Decision(False, reason=DenyReason.BAD_REQUEST)
_CROSS_SITE = Decision(False, reason=DenyReason.CROSS_SITE)


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", list: "an array", dict: "an object"}.get(type(value), "null")


