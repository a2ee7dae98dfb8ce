"""``GET /v1/datasets/{dataset}/index?prefix=&cursor=&limit=``: a page of a dataset's objects as
gateway URLs, with their size, media type and ETag (gateway/service/listing.py)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from gateway.api.errors import json_response
from gateway.errors import BadRequest
from gateway.service import RequestContext, UseCases
from gateway.service.listing import DEFAULT_LIMIT


async def list_objects(use: UseCases, ctx: RequestContext, dataset: str, capability: str | None, scope: Scope,
                       receive: Receive, send: Send) -> None:
    query = parse_qs(ctx.request.query, keep_blank_values=True)
    if any(len(values) > 1 for values in query.values()) or set(query) - {"prefix", "cursor", "limit"}:
        raise BadRequest("give prefix, cursor and limit at most once each, and nothing else")
    limit_text = query.get("limit", [str(DEFAULT_LIMIT)])[0]
    if not limit_text.isdigit() or len(limit_text) > 5:
        raise BadRequest("limit is a number")
    page = await use.listings.page(ctx, dataset, prefix=query.get("prefix", [""])[0],
                                   cursor=query.get("cursor", [None])[0], limit=int(limit_text),
                                   capability=capability)
    body = {
        "dataset": dataset,
        "objects": [{"key": item.key, "url": url, "size": item.size, "etag": item.etag, "content_type": kind}
                    for item, url, kind in page.objects],
        "next_cursor": page.next_cursor,
    }
    await json_response(body, 200, {"Cache-Control": "private, no-store"})(scope, receive, send)
