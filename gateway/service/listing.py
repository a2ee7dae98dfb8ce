"""Listing: a page of a dataset's objects as gateway URLs, so that a vendor imports without any access
to the bucket (``GET /v1/datasets/{dataset}/index?prefix=&cursor=&limit=``).

Listing is its own permission (a rule grants ``list``), admitted by the one admit step; the dataset's
``allow_keys`` (and a capability's prefixes) apply to what is listed. One storage page per request,
whatever the bucket's size. The cursor is opaque and tamper-proof: the storage's continuation, bound
by an HMAC to the dataset and the prefix it continues, so it cannot be moved to another listing.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

import orjson

from gateway.backends import Listed, Lister
from gateway.errors import BadRequest, InvalidKey, NotFound
from gateway.keys import validate_key
from gateway.media import content_type
from gateway.routes import capability_path, object_path
from gateway.service.admit import Gate
from gateway.service.context import RequestContext

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Page:
    objects: list[tuple[Listed, str, str]]  # the object, its gateway URL, its media type
    next_cursor: str | None


class Listings:
    def __init__(self, gate: Gate, *, signing_key: bytes, base_url: str) -> None:
        self.gate = gate
        self._key = hmac.digest(signing_key, b"gateway listing cursors v1", "sha256")
        self._base = base_url.rstrip("/")

    async def page(self, ctx: RequestContext, dataset: str, *, prefix: str, cursor: str | None, limit: int,
                   capability: str | None = None) -> Page:
        admitted = await self.gate.admit(ctx, dataset, None, action="list", grant="list", capability=capability)
        if prefix:
            try:
                validate_key(prefix + "x", admitted.ds.max_key_bytes)  # a prefix is the start of a valid key
            except InvalidKey as exc:
                raise BadRequest(f"the prefix is not valid: {exc.detail}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit is a number from 1 to {MAX_LIMIT}")
        start = self._open(cursor, dataset, prefix) if cursor else None
        lister = ctx.state.backends.get(admitted.ds.name)
        if not isinstance(lister, Lister):
            raise NotFound("this dataset's backend cannot list its objects")
        found = await lister.list_page(prefix, start, limit)
        visible = self.gate.listed(admitted, [item.key for item in found.objects])
        base = self._base
        objects = [(item, base + (capability_path(capability, dataset, item.key) if capability else
                                  object_path(dataset, item.key)), item.content_type or content_type(item.key))
                   for item, shown in zip(found.objects, visible, strict=True) if shown]
        ctx.audit.keys = [item.key for item, _, _ in objects]
        return Page(objects, self._seal(found.next_token, dataset, prefix) if found.next_token else None)

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._key, payload, "sha256")[:16]).rstrip(b"=").decode()

    def _seal(self, token: str, dataset: str, prefix: str) -> str:
        payload = orjson.dumps([dataset, prefix, token])
        return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + self._mac(payload)

    def _open(self, cursor: str, dataset: str, prefix: str) -> str:
        body, _, mac = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            dataset_, prefix_, token = orjson.loads(payload)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise BadRequest("the cursor is not one this gateway gave out") from None
        # Constant time: the MAC binds the storage's continuation to this dataset and prefix.
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()) or (dataset_, prefix_) != (
                dataset, prefix) or not isinstance(token, str):
            raise BadRequest("the cursor is not one this gateway gave out for this listing")
        return token
