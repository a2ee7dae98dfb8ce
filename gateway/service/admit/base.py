"""The admit step's core: the decision for a known identity, and the one way it says no (:meth:`_refuse`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

from gateway.auth import Identity
from gateway.auth.vendor import check_body as check_vendor_body
from gateway.errors import (
    CrossSiteRefused,
    Forbidden,
    GatewayError,
    InvalidKey,
    Unauthenticated,
)
from gateway.keys import canonical_key
from gateway.metrics import Metrics
from gateway.models import Decision, DenyReason, IPAddress, Principal
from gateway.policy import CompiledDataset
from gateway.ratelimit import RateLimiter
from gateway.service.admit.types import Admitted
from gateway.service.context import RequestContext
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.limits import RateLimits
from gateway.service.refusals import deny_detail, stranger_refusal


class GateBase:
    """The decision itself, and the one way the admit step says no (:meth:`_refuse`)."""

    def __init__(self, *, metrics: Metrics, limiter: RateLimiter | None = None,
                 gateway_urls: GatewayUrls | None = None, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.limits = RateLimits(limiter, metrics)
        self.gateway_urls = gateway_urls
        self.clock = clock
        self._tally = metrics.tally
        self._allowed = metrics.decisions.labels("allow", "rule")


    async def admit_principal(self, ctx: RequestContext, dataset: str, raw_key: str | bytes | None,
                              identity: Identity, *, cost: int = 1, grant: str = "read") -> Admitted:
        """The steps after authentication, for a known identity (``gateway test-policy`` evaluates
        cases through here, offline, exactly as the server decides)."""
        principal = identity.principal
        audit = ctx.audit
        audit.principal = principal
        ds = ctx.state.policy.datasets.get(dataset)
        if ds is None:
            refused = stranger_refusal(principal, known=False, sign_in=bool(ctx.state.browsers))
            self._refuse(ctx, refused, DenyReason.UNKNOWN_DATASET)
        # Rules do not depend on the key: who may read this dataset at all, from this address?
        client_ip = ctx.request.client_ip
        rule = ds.matching_rule(principal, client_ip, grant) if ds.rules else None
        if rule is None:
            reason = DenyReason.NO_RULE_MATCHED if ds.rules else DenyReason.NO_RULES
            self._refuse(ctx, stranger_refusal(principal, known=True, sign_in=bool(ctx.state.browsers)), reason)
        if ds.config.rate_limit is not None:
            await self._rate_limit(ctx, ds, client_ip, principal, cost)
        if raw_key is None:  # a batch: each key is checked (and counted) by keys()
            audit.decision = rule.allow
            return Admitted(ds, None, principal, rule.allow, identity.renewal)
        try:
            key = canonical_key(raw_key, ds.max_key_bytes)
        except InvalidKey as exc:
            self._refuse(ctx, exc, DenyReason.INVALID_KEY)
        audit.key = key
        if not ds.key_pattern.match(key):
            refused = Forbidden(deny_detail(rule.key_denied), reason=DenyReason.KEY_NOT_ALLOWED)
            self._refuse(ctx, refused, DenyReason.KEY_NOT_ALLOWED, rule.rule.name)
        audit.decision = rule.allow
        self._tally.inc(self._allowed)
        return Admitted(ds, key, principal, rule.allow, identity.renewal)


    async def authenticate(self, ctx: RequestContext) -> Identity:
        """The request's one credential (the first step of :meth:`admit`; a route that must read a body
        first, the batch, calls it before reading, then :meth:`check_body` and :meth:`admit_principal`)."""
        try:
            return await ctx.state.auth.authenticate(ctx.request)
        except (Unauthenticated, CrossSiteRefused) as exc:
            self._unauthenticated(ctx, exc)

    def _unauthenticated(self, ctx: RequestContext, exc: Unauthenticated | CrossSiteRefused) -> NoReturn:
        """A credential that does not prove itself: counted by scheme and reason, then refused."""
        if isinstance(exc, CrossSiteRefused):  # a browser session sent by a page that is not an embedder
            self.metrics.auth_failures.labels("session", exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.CROSS_SITE)
        self.metrics.auth_failures.labels(exc.scheme.lower(), exc.reason).inc()
        self._refuse(ctx, exc, DenyReason.UNAUTHENTICATED)


    def check_body(self, ctx: RequestContext, body: bytes) -> None:
        """A request body, held to what its credential signed (a vendor's version 2 signature covers
        the body's SHA-256): every route that uses a body calls this once it has read it."""
        try:
            check_vendor_body(ctx.headers, body)
        except Unauthenticated as exc:
            self.metrics.auth_failures.labels(exc.scheme.lower(), exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.UNAUTHENTICATED)


    async def _rate_limit(self, ctx: RequestContext, ds: CompiledDataset, client_ip: IPAddress,
                          principal: Principal, cost: int) -> None:
        limited = await self.limits.spend(ds, client_ip, principal, cost)
        if limited is not None:
            self._refuse(ctx, limited, DenyReason.RATE_LIMITED)


    def _refuse(self, ctx: RequestContext, exc: GatewayError, reason: DenyReason, rule: str | None = None) -> NoReturn:
        """Every refusal of the admit step: counted, put in the audit record, raised."""
        self.metrics.decisions.labels("deny", reason).inc()
        ctx.audit.decision = Decision(False, rule=rule, reason=reason)
        raise exc
