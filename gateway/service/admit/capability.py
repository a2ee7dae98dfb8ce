"""The admit step for a capability (gateway/auth/capabilities.py): a browser session's delegate."""

from __future__ import annotations

from gateway.auth import Identity
from gateway.auth.capabilities import CapabilityAuthority, CapabilityOutOfScope, CapabilityRefused
from gateway.errors import (
    AmbiguousCredentials,
)
from gateway.models import Decision, DenyReason
from gateway.service.admit.base import GateBase
from gateway.service.admit.types import Admitted
from gateway.service.context import RequestContext


class Capabilities(GateBase):
    async def _admit_capability(self, ctx: RequestContext, dataset: str, raw_key: str | bytes | None, token: str,
                                cost: int, grant: str) -> Admitted:
        """A capability: the session it delegates, from the address and the page it was handed to,
        for the datasets and prefixes it was handed out for. Another credential beside it is refused
        (never decided by one of them); the gateway's own session cookie is not read here (browsers
        that allow third-party cookies send it along)."""
        request = ctx.request
        headers = request.headers
        if "x-gateway-signature" in headers or (
                "authorization" in headers and not headers["authorization"].endswith(token)):
            self._refuse(ctx, AmbiguousCredentials("the request carries more than one credential; send exactly one"),
                         DenyReason.UNAUTHENTICATED)
        authority = ctx.state.capabilities
        if authority is None:
            self._refuse(ctx, CapabilityRefused("not_offered", "this gateway hands out no capabilities (no browser "
                                                "sign-in)"), DenyReason.UNAUTHENTICATED)
        try:
            capability, principal = await authority.authenticate(token, request.client_text, headers.get("origin"))
        except CapabilityRefused as exc:
            self.metrics.auth_failures.labels("capability", exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.UNAUTHENTICATED)
        if not capability.in_scope(dataset, None):
            ctx.audit.principal = principal
            self._refuse(ctx, CapabilityOutOfScope("this capability was not handed out for this dataset"),
                         DenyReason.OUT_OF_SCOPE)
        admitted = await self.admit_principal(ctx, dataset, raw_key, Identity(principal), cost=cost, grant=grant)
        if admitted.key is not None and not capability.in_scope(dataset, admitted.key):
            self._refuse(ctx, CapabilityOutOfScope("this capability was not handed out for this key"),
                         DenyReason.OUT_OF_SCOPE, admitted.decision.rule)
        return admitted._replace(prefixes=capability.prefixes)

    async def renew(self, ctx: RequestContext, authority: CapabilityAuthority, token: str) -> tuple[str, int]:
        """A fresh capability for a live one (``POST /v1/c/{capability}/renew``), refused like a use."""
        request = ctx.request
        try:
            fresh, expires, principal = await authority.renew(token, request.client_text, request.headers.get("origin"))
        except CapabilityRefused as exc:
            self.metrics.auth_failures.labels("capability", exc.reason).inc()
            self._refuse(ctx, exc, DenyReason.UNAUTHENTICATED)
        ctx.audit.principal, ctx.audit.decision = principal, _RENEWED
        return fresh, expires


_RENEWED = Decision(True, rule="capability")
