"""The one admit step. Every use case that answers for an object (a redirect, a JSON URL, a batch, a
proxied read, a local-disk read, a gateway URL) is let in here, and nowhere else:

    who is asking (the request's one credential, or the URL's own signature)
      ▶ the dataset ▶ does any rule admit this caller, whatever the key?     (strangers stop here)
      ▶ rate limit ▶ the key, canonical ▶ the dataset's allow_keys ▶ admitted

A caller no rule admits is refused before its key, its URL or its rate is looked at, so a stranger
hears the same for a bad key, a bad URL signature, an unknown dataset and a refused one (invariant
14). Every refusal is counted, put in the request's audit record, and raised from :meth:`_refuse`;
every admission fills in the record. Use cases receive an :class:`Admitted` and never decide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn

from gateway.auth import NOBODY, Identity
from gateway.auth.vendor import check_body as check_vendor_body
from gateway.backends import FileSource
from gateway.errors import CrossSiteRefused, Forbidden, GatewayError, InvalidKey, Unauthenticated, Unavailable
from gateway.keys import canonical_key, validate_key
from gateway.metrics import Metrics
from gateway.models import ANONYMOUS, Decision, DenyReason, IPAddress, Principal
from gateway.policy import CompiledDataset
from gateway.ratelimit import RateLimiter
from gateway.service.context import RequestContext
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.limits import RateLimits
from gateway.service.refusals import deny_detail, expired_refusal, stranger_refusal, url_refusal
from gateway.service.url_signature import UrlSignature


class Admitted(NamedTuple):
    """What the admit step let in: the use case acts on exactly this."""

    ds: CompiledDataset
    key: str | None  # the canonical key; None for a batch (its keys are checked by :meth:`Gate.keys`)
    principal: Principal
    decision: Decision
    renewal: str | None = None  # a renewed session cookie the answer must carry
    expires: int | None = None  # the URL's expiry, when its own signature was the credential


class KeyVerdict(NamedTuple):
    """One key of a batch: admitted (``key``) or refused (``error``, ``detail``)."""

    position: int
    key: str | None
    error: str | None = None
    detail: str | None = None


class Gate:
    def __init__(self, *, metrics: Metrics, limiter: RateLimiter | None = None,
                 gateway_urls: GatewayUrls | None = None, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.limits = RateLimits(limiter, metrics)
        self.gateway_urls = gateway_urls
        self.clock = clock
        self._tally = metrics.tally
        self._allowed = metrics.decisions.labels("allow", "rule")

    async def admit(self, ctx: RequestContext, dataset: str, raw_key: str | bytes | None, *, action: str,
                    cost: int = 1, signature: UrlSignature | None = None) -> Admitted:
        """Let the request in for ``raw_key`` of ``dataset`` (still percent-encoded, as it came in the
        path; None for a batch), or raise what this caller may hear. With ``signature`` the URL's own
        signature is the credential, and no other authentication applies."""
        audit = ctx.audit
        audit.action = action
        audit.dataset = dataset[:64]
        if signature is not None:
            return await self._admit_signed(ctx, dataset, raw_key, signature, cost)
        # authenticate() inlined: the request path's common case pays one coroutine less.
        try:
            identity = await ctx.state.auth.authenticate(ctx.request)
        except Unauthenticated as exc:
            self.metrics.auth_failures.labels(exc.scheme.lower(), exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.UNAUTHENTICATED)
        except CrossSiteRefused as exc:  # a browser session sent by a page that is not an embedder
            self.metrics.auth_failures.labels("session", exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.CROSS_SITE)
        return await self.admit_principal(ctx, dataset, raw_key, identity, cost=cost)

    async def admit_principal(self, ctx: RequestContext, dataset: str, raw_key: str | bytes | None,
                              identity: Identity, *, cost: int = 1) -> Admitted:
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
        rule = ds.matching_rule(principal, client_ip) if ds.rules else None
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

    def keys(self, admitted: Admitted, keys: Sequence[Any]) -> list[KeyVerdict]:
        """A batch's keys, each admitted or refused on its own: one bad key never fails the batch."""
        ds = admitted.ds
        allowed = ds.key_pattern.match
        max_bytes = ds.max_key_bytes
        verdicts = []
        refused = 0
        for i, raw in enumerate(keys):
            if not isinstance(raw, str):
                # Never the value itself, nor its Python text: it may be anything, nested anyhow.
                verdicts.append(KeyVerdict(i, None, "invalid_key", f"key {i} is {_json_type(raw)}, not a string"))
                refused += 1
                continue
            try:
                key = validate_key(raw, max_bytes)
            except InvalidKey as exc:
                # A lone surrogate ("\ud800") cannot be written back as JSON: show it replaced.
                shown = raw.encode("utf-16", "surrogatepass").decode("utf-16", "replace")[:1100]
                verdicts.append(KeyVerdict(i, shown, exc.code, exc.detail))
                refused += 1
                continue
            if allowed(key):
                verdicts.append(KeyVerdict(i, key))
            else:
                verdicts.append(KeyVerdict(i, key, "forbidden", "the policy does not allow this key in this dataset"))
                refused += 1
        self._tally.inc(self._allowed, len(verdicts) - refused)
        if refused:
            self.metrics.decisions.labels("deny", "batch").inc(refused)
        return verdicts

    async def authenticate(self, ctx: RequestContext) -> Identity:
        """The request's one credential (the first step of :meth:`admit`; a route that must read a body
        first, the batch, calls it before reading, then :meth:`check_body` and :meth:`admit_principal`)."""
        try:
            return await ctx.state.auth.authenticate(ctx.request)
        except Unauthenticated as exc:
            self.metrics.auth_failures.labels(exc.scheme.lower(), exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.UNAUTHENTICATED)
        except CrossSiteRefused as exc:  # a browser session sent by a page that is not an embedder
            self.metrics.auth_failures.labels("session", exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.CROSS_SITE)

    def check_body(self, ctx: RequestContext, body: bytes) -> None:
        """A request body, held to what its credential signed (a vendor's version 2 signature covers
        the body's SHA-256): every route that uses a body calls this once it has read it."""
        try:
            check_vendor_body(ctx.headers, body)
        except Unauthenticated as exc:
            self.metrics.auth_failures.labels(exc.scheme.lower(), exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.UNAUTHENTICATED)

    async def _admit_signed(self, ctx: RequestContext, dataset: str, raw_key: str | bytes | None,
                            signature: UrlSignature, cost: int) -> Admitted:
        """A gateway URL or a local-disk URL: the signature covers the dataset, the key and the expiry
        (and, for gateway URLs, the client's address). Every failure before the expiry check is the
        one URL refusal: a caller holding no valid URL learns nothing about the dataset."""
        ctx.audit.principal = ANONYMOUS
        ds = ctx.state.policy.datasets.get(dataset)
        if ds is None or raw_key is None:
            self._refuse(ctx, url_refusal(), DenyReason.UNKNOWN_DATASET)
        try:
            key = canonical_key(raw_key, ds.max_key_bytes)
        except InvalidKey:
            self._refuse(ctx, url_refusal(), DenyReason.INVALID_KEY)
        ctx.audit.key = key
        now = self.clock()
        try:
            expires = self._verify(ctx, ds, key, signature, now)
        except Forbidden as exc:
            if exc.reason == DenyReason.EXPIRED:
                self._refuse(ctx, expired_refusal(), DenyReason.EXPIRED)
            self._refuse(ctx, url_refusal(), DenyReason.BAD_SIGNATURE)
        if ds.config.rate_limit is not None:
            await self._rate_limit(ctx, ds, ctx.request.client_ip, ANONYMOUS, cost)
        ctx.audit.decision = _SIGNED_URL
        self._tally.inc(self._allowed)
        return Admitted(ds, key, ANONYMOUS, _SIGNED_URL, None, expires)

    def _verify(self, ctx: RequestContext, ds: CompiledDataset, key: str, signature: UrlSignature, now: float) -> int:
        if signature.kind == "gateway":
            if not ds.proxy or self.gateway_urls is None:  # only proxy datasets hand out gateway URLs
                raise Forbidden("not a gateway URL dataset", reason=DenyReason.BAD_SIGNATURE)
            return self.gateway_urls.verify(ds.name, key, ctx.request.client_text, exp=signature.exp,
                                            sig=signature.sig, now=now)
        backend = ctx.state.backends.get(ds.name)
        if not isinstance(backend, FileSource):
            raise Forbidden("not a local-disk dataset", reason=DenyReason.BAD_SIGNATURE)
        return backend.verify(key, exp=signature.exp, sig=signature.sig, now=now)

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


_SIGNED_URL = Decision(True, rule="signed_url")


def require_gateway_urls(urls: GatewayUrls | None) -> GatewayUrls:
    if urls is None:
        raise Unavailable("this gateway has no signing key for proxy URLs")
    return urls


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", list: "an array", dict: "an object"}.get(type(value), "null")


__all__ = ["NOBODY", "Admitted", "Gate", "KeyVerdict"]
