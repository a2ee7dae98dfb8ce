"""The hot path: a redirect the gateway granted a moment ago, asked for again.

A page of thumbnails reloads the same few hundred URLs with the same token, from the same client.
Authenticating and deciding each again gives the same answer until something that decided it
changes, so the first answer is kept as a :class:`~gateway.service.grants.Grant` under the exact inputs
of the decision, and repeats are answered from it: a header scan, a dict lookup, an audit record.

The grant key holds everything authentication and policy read from a request: the raw path (the
dataset and the key, percent-encoding intact), the ``Authorization`` header, the socket peer, and
the ``X-Forwarded-For`` and ``Forwarded`` headers (the client IP is derived from these three).
Anything else that could change the answer takes the full path instead: a query string (``?format=
json``), an ``Accept`` that mentions JSON, vendor HMAC headers (single-use signatures), a repeated
header, fail-closed audit, and datasets with rate limits (the service grants nothing there).
The full path fills the grant, and only after checking that the key it was given matches the
request it decided (:func:`key_matches`), so a server that hands over headers in an unexpected
shape cannot make two different requests share one key.

Every answer is still audited and counted exactly as on the full path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.context import OBJECTS
from gateway.api.errors import internal_error
from gateway.api.middleware import EdgeMiddleware

if TYPE_CHECKING:
    from gateway.app import Runtime

log = logging.getLogger("gateway.http")

GRANT_KEY = "grant_key"  # where the fast lane leaves the key for the full path, in scope["state"]
_STATIC = [(b"referrer-policy", b"no-referrer"), (b"vary", b"Accept"), (b"content-length", b"0")]


class FastLane:
    """Answers repeated object redirects from grants; hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, runtime: Runtime, edge: EdgeMiddleware) -> None:
        self.app = app
        self.runtime = runtime
        self.edge = edge
        self.service = runtime.service
        tally = runtime.metrics.tally
        self._count = tally.inc
        self._observe = tally.observe
        self._requests = runtime.metrics.requests.labels("objects", "302")
        self._seconds = runtime.metrics.request_seconds.labels("objects")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("raw_path")
        if (scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or scope.get("query_string")
                or not isinstance(path, bytes) or not path.startswith(OBJECTS) or not self.service.grants.entries
                or self.runtime.audit.fail_closed):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        authorization = forwarded_for = forwarded = origin = request_id = user_agent = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is not None:
                    return await self.app(scope, receive, send)
                authorization = value
            elif name == b"user-agent":
                user_agent = value
            elif name == b"origin":
                origin = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"accept":
                if b"json" in value:
                    return await self.app(scope, receive, send)
            elif name == b"x-forwarded-for":
                if forwarded_for is not None:
                    return await self.app(scope, receive, send)
                forwarded_for = value
            elif name == b"forwarded":
                if forwarded is not None:
                    return await self.app(scope, receive, send)
                forwarded = value
            elif name.startswith(b"x-gateway-"):
                return await self.app(scope, receive, send)
        client = scope.get("client")
        key = (path, authorization, client[0] if client else None, forwarded_for, forwarded)
        grant = self.service.grants.get(key)
        if grant is None:
            scope.setdefault("state", {})[GRANT_KEY] = key
            await self.app(scope, receive, send)
            return

        rid = self.edge.request_id(request_id)
        try:
            # Audited before answering, like the full path.
            await self.service.regrant(grant, rid, user_agent.decode("latin-1") if user_agent else "", started)
            headers = [
                (b"location", grant.location),
                (b"cache-control", b"private, max-age=%d" % self.service.cache_max_age(grant.url)),
                *_STATIC,
                (b"x-request-id", rid.encode("ascii")),
            ]
            if origin is not None:
                headers += self.edge.cors_headers(origin)
        except Exception:  # a bug, never a traceback to the client: the same JSON 500 as the edge's
            log.exception("unhandled error", extra={"request_id": rid})
            response = internal_error(rid)
            response.headers["X-Request-ID"] = rid
            for name, value in self.edge.cors_headers(origin) if origin is not None else ():
                response.headers[name.decode()] = value.decode("latin-1")
            await response(scope, receive, send)
            self._count(self.runtime.metrics.requests.labels("objects", "500"))
            return
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        self._count(self._requests)
        self._observe(self._seconds, time.perf_counter() - started)


def key_matches(key: Hashable, headers: Mapping[str, str]) -> bool:
    """Does the fast lane's key hold the same credential and forwarding headers as ``headers``
    (the lower-cased, joined map the full path decided on)? Only then may the answer be granted."""
    if not isinstance(key, tuple) or len(key) != 5:
        return False
    _, authorization, _, forwarded_for, forwarded = key

    def same(raw: object, name: str) -> bool:
        value = headers.get(name)
        return raw is None if value is None else isinstance(raw, bytes) and raw == value.encode("latin-1")

    return (same(authorization, "authorization") and same(forwarded_for, "x-forwarded-for")
            and same(forwarded, "forwarded") and not any(name.startswith("x-gateway-") for name in headers)
            and "json" not in headers.get("accept", ""))
