"""Signing: the URL of one admitted key (a redirect or a JSON answer), or of a batch of keys.

Presigned storage URLs come from the signer and its caches; a proxy dataset's URLs are the
gateway's own, bound to the client's address (gateway/service/gateway_urls.py), so that no storage
URL leaves the gateway (invariant 10).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.auth import Identity
from gateway.errors import PayloadTooLarge
from gateway.models import Decision, DenyReason, SignedUrl
from gateway.policy import CompiledDataset
from gateway.service.admit import Admitted, Gate, require_gateway_urls
from gateway.service.context import RequestContext
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.signing import UrlSigner


@dataclass(frozen=True, slots=True)
class BatchItem:
    key: str | None  # None for a key that is not a string at all
    url: SignedUrl | None = None
    error: str | None = None
    detail: str | None = None


class Redirects:
    def __init__(self, gate: Gate, signer: UrlSigner, *, gateway_urls: GatewayUrls | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.gate = gate
        self.signer = signer
        self.gateway_urls = gateway_urls
        self.clock = clock

    async def one(self, ctx: RequestContext, dataset: str, raw_key: str | bytes, *, as_json: bool = False,
                  capability: str | None = None) -> tuple[SignedUrl, int, Admitted]:
        """The URL of one key, how long a browser may keep the answer, and what was admitted.
        ``raw_key`` is still percent-encoded, as it came in the path."""
        admitted = await self.gate.admit(ctx, dataset, raw_key, action="sign" if as_json else "redirect",
                                         capability=capability)
        ds, key = admitted.ds, admitted.key
        assert key is not None  # noqa: S101 - admitted with a key
        if ds.proxy:
            url = self._gateway_urls(ctx, ds, [key])[0]
        else:
            cached = self.signer.cached(ctx.state, ds, key)  # no coroutine on a hit
            if cached is not None:
                url = cached
                ctx.audit.cache = "hit"
            else:
                ctx.audit.cache = "miss"
                url = await self.signer.one(ctx.state, ds, key)
        return url, self.signer.max_age(ds, url), admitted

    async def batch(self, ctx: RequestContext, dataset: str, keys: Sequence[Any], *,
                    identity: Identity | None = None) -> list[BatchItem]:
        """Sign many keys in one pass. One bad key never fails the batch; results keep the order.
        ``identity``: the request was authenticated already (the HTTP route does it before it reads
        the body)."""
        limit = ctx.state.policy.source.defaults.batch_limit
        if len(keys) > limit:  # the HTTP route checks it before reading the keys; other callers may not
            raise PayloadTooLarge(f"a batch holds at most {limit} keys; got {len(keys)}")
        ctx.audit.action = "sign_batch"
        if identity is None:
            identity = await self.gate.authenticate(ctx)
        ctx.audit.dataset = dataset[:64]
        admitted = await self.gate.admit_principal(ctx, dataset, None, identity, cost=len(keys))  # every key counts
        ds = admitted.ds
        verdicts = self.gate.keys(admitted, keys)
        wanted = [v.key for v in verdicts if v.error is None and v.key is not None]
        urls: list[SignedUrl] = []
        hits = 0
        if wanted:
            if ds.proxy:
                urls = self._gateway_urls(ctx, ds, wanted)
            else:
                urls, hits = await self.signer.many(ctx.state, ds, wanted)
        signed = iter(urls)
        items = [BatchItem(v.key, url=next(signed)) if v.error is None else BatchItem(v.key, error=v.error,
                                                                                       detail=v.detail)
                 for v in verdicts]
        audit = ctx.audit
        audit.keys, audit.denied = wanted, len(verdicts) - len(wanted)
        audit.cache = f"{hits}/{len(wanted)}"
        if not wanted:  # every key refused: the batch as a whole let nothing out
            audit.decision = Decision(False, rule=admitted.decision.rule, reason=DenyReason.KEY_NOT_ALLOWED)
        return items

    def _gateway_urls(self, ctx: RequestContext, ds: CompiledDataset, keys: list[str]) -> list[SignedUrl]:
        """A proxy dataset's URLs: the gateway's own, bound to this client's address (an HMAC each:
        nothing worth caching)."""
        signed_at = int(self.clock() // ds.bucket * ds.bucket)
        return require_gateway_urls(self.gateway_urls).sign(ds.name, keys, ctx.request.client_text,
                                                            signed_at=signed_at, expires_in=ds.ttl)
