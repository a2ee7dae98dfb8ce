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

from gateway.auth.capabilities import PREFIX as CAPABILITY_PREFIX
from gateway.errors import CrossSiteRefused, Unauthenticated
from gateway.service.admit.capability import Capabilities
from gateway.service.admit.keys import KeyChecks
from gateway.service.admit.signed import SignedUrls, require_gateway_urls
from gateway.service.admit.types import Admitted, KeyVerdict
from gateway.service.context import RequestContext
from gateway.service.url_signature import UrlSignature


class Gate(KeyChecks, SignedUrls, Capabilities):
    """The one admit step (see the module docstring); its parts are in this package's modules."""

    async def admit(self, ctx: RequestContext, dataset: str, raw_key: str | bytes | None, *, action: str,
                    cost: int = 1, signature: UrlSignature | None = None, capability: str | None = None,
                    grant: str = "read") -> Admitted:
        """Let the request in for ``raw_key`` of ``dataset`` (still percent-encoded, as it came in the
        path; None for a batch or a listing), or raise what this caller may hear. With ``signature``
        the URL's own signature is the credential, with ``capability`` (from the path, or a bearer
        ``gwc1.`` token) the session it delegates; no other authentication applies to either.
        ``grant`` is what the caller wants to do: ``read`` or ``list``."""
        audit = ctx.audit
        audit.action = action
        audit.dataset = dataset[:64]
        if signature is not None:
            return await self._admit_signed(ctx, dataset, raw_key, signature, cost)
        authorization = ctx.request.headers.get("authorization")
        if capability is None and authorization is not None and authorization[7:12] == CAPABILITY_PREFIX:
            capability = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        if capability is not None:
            return await self._admit_capability(ctx, dataset, raw_key, capability, cost, grant)
        # authenticate() inlined: the request path's common case pays one coroutine less.
        try:
            identity = await ctx.state.auth.authenticate(ctx.request)
        except (Unauthenticated, CrossSiteRefused) as exc:
            self._unauthenticated(ctx, exc)
        return await self.admit_principal(ctx, dataset, raw_key, identity, cost=cost, grant=grant)


__all__ = ["Admitted", "Gate", "KeyVerdict", "require_gateway_urls"]
