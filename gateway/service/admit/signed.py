"""The admit step for a URL that is its own credential: a gateway URL, a local-disk URL."""

from __future__ import annotations

from gateway.backends import FileSource
from gateway.errors import (
    Forbidden,
    InvalidKey,
    Unavailable,
)
from gateway.keys import canonical_key
from gateway.models import ANONYMOUS, Decision, DenyReason
from gateway.policy import CompiledDataset
from gateway.service.admit.base import GateBase
from gateway.service.admit.types import Admitted
from gateway.service.context import RequestContext
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.refusals import expired_refusal, url_refusal
from gateway.service.url_signature import UrlSignature

_SIGNED_URL = Decision(True, rule="signed_url")


class SignedUrls(GateBase):
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



def require_gateway_urls(urls: GatewayUrls | None) -> GatewayUrls:
    if urls is None:
        raise Unavailable("this gateway has no signing key for proxy URLs")
    return urls


