"""The fast lane: object redirects for a credential the gateway has just seen.

A page of thumbnails asks for hundreds of URLs with one token, from one client, and reloads them.
Two things the full path works out stay true for a while, so they are kept (gateway/service/grants.py):

- a **grant**, the whole answer to one exact request, until the policy, the token or the URL's time
  bucket changes: a repeat is answered with a header scan, a dict lookup and an audit record;
- a **session**, who is asking (the authentication of one credential from one client), until the
  policy or the token changes: a request for a new key skips authentication, and is then decided by
  the policy, signed and audited like any other.

The grant key holds everything authentication and policy read from a request: the raw path (the
dataset and the key, percent-encoding intact), the ``Authorization`` header, the socket peer, and
the ``X-Forwarded-For`` and ``Forwarded`` headers (the client IP is derived from these three); the
session key is the same without the path. Anything else that could change the answer takes the full
path: a query string (``?format=json``), an ``Accept`` that mentions JSON, vendor HMAC headers
(single-use signatures), a repeated header, and fail-closed audit; datasets with rate limits are
never granted (every request is counted), and vendor principals never get a session. The full path
fills both, and only after checking that the key it was given matches the request it decided
(:func:`key_matches`), so a server that hands over headers in an unexpected shape cannot make two
different requests share one key.

Every answer is audited and counted exactly as on the full path; errors are the same JSON, with the
same ``X-Request-ID`` and CORS headers as the edge adds.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.context import OBJECTS, split_path
from gateway.api.errors import error_response, internal_error
from gateway.api.middleware import EdgeMiddleware
from gateway.errors import GatewayError
from gateway.logs import request_id_var
from gateway.models import RequestContext
from gateway.service.grants import Grant, Session

if TYPE_CHECKING:
    from gateway.app import Runtime

log = logging.getLogger("gateway.http")

GRANT_KEY = "grant_key"  # where the fast lane leaves the key for the full path, in scope["state"]
_STATIC = [(b"referrer-policy", b"no-referrer"), (b"vary", b"Accept"), (b"content-length", b"0")]


class FastLane:
    """Answers object redirects from grants and sessions; hands everything else to ``app`` (the edge)."""

    def __init__(self, app: ASGIApp, runtime: Runtime, edge: EdgeMiddleware) -> None:
        self.app = app
        self.runtime = runtime
        self.edge = edge
        self.service = runtime.service
        tally = runtime.metrics.tally
        self._count = tally.inc
        self._observe = tally.observe
        self._requests = runtime.metrics.requests.labels("objects", "302")
        by_status = functools.partial(runtime.metrics.requests.labels, "objects")
        self._statuses = functools.lru_cache(maxsize=None)(by_status)
        self._seconds = runtime.metrics.request_seconds.labels("objects")
        self._session_hits = runtime.metrics.cache_requests.labels("session", "hit")

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
        if grant is not None:
            await self._from_grant(grant, scope, receive, send, started, request_id, origin, user_agent)
            return
        edge = self.edge
        session = self.service.sessions.get(session_key(key))
        if session is None or (edge.max_concurrency and edge.in_flight >= edge.max_concurrency):
            scope.setdefault("state", {})[GRANT_KEY] = key  # the full path (and the edge's 503)
            await self.app(scope, receive, send)
            return
        self._count(self._session_hits)
        edge.in_flight += 1
        try:
            await self._from_session(session, key, scope, receive, send, started, request_id, origin, user_agent)
        finally:
            edge.in_flight -= 1

    async def _from_grant(self, grant: Grant, scope: Scope, receive: Receive, send: Send, started: float,
                          request_id: bytes | None, origin: bytes | None, user_agent: bytes | None) -> None:
        rid = self.edge.request_id(request_id)
        try:
            # Audited before answering, like the full path.
            await self.service.regrant(grant, rid, user_agent.decode("latin-1") if user_agent else "", started)
            headers = redirect_headers(grant.location, self.service.cache_max_age(grant.url))
        except Exception:  # a bug, never a traceback to the client: the same JSON 500 as the edge's
            log.exception("unhandled error", extra={"request_id": rid})
            await self._answer(internal_error(rid), rid, origin, scope, receive, send, started)
            return
        await self._redirect(headers, rid, origin, send, started)

    async def _from_session(self, session: Session, key: tuple[Any, ...], scope: Scope, receive: Receive,
                            send: Send, started: float, request_id: bytes | None, origin: bytes | None,
                            user_agent: bytes | None) -> None:
        """A new key for a known credential: the full decision and signing, without authenticating."""
        rid = self.edge.request_id(request_id)
        token = request_id_var.set(rid)
        try:
            dataset, raw_key = split_path(key[0], OBJECTS, b"objects/")
            ctx = RequestContext(rid, session.client_ip, user_agent.decode("latin-1") if user_agent else "",
                                 session.principal)
            url = await self.service.sign(ctx, dataset, raw_key, action="redirect", status=302, grant_key=key)
            headers = redirect_headers(url.url.encode("latin-1"), self.service.cache_max_age(url))
        except GatewayError as exc:
            await self._answer(error_response(exc, rid), rid, origin, scope, receive, send, started)
            return
        except Exception:
            log.exception("unhandled error", extra={"request_id": rid})
            await self._answer(internal_error(rid), rid, origin, scope, receive, send, started)
            return
        finally:
            request_id_var.reset(token)
        await self._redirect(headers, rid, origin, send, started)

    async def _redirect(self, headers: list[tuple[bytes, bytes]], rid: str, origin: bytes | None, send: Send,
                        started: float) -> None:
        headers.append((b"x-request-id", rid.encode("ascii")))
        if origin is not None:
            headers += self.edge.cors_headers(origin)
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        self._count(self._requests)
        self._observe(self._seconds, time.perf_counter() - started)

    async def _answer(self, response: Response, rid: str, origin: bytes | None, scope: Scope, receive: Receive,
                      send: Send, started: float) -> None:
        """An error, with what the edge adds to every answer: the request id and CORS headers."""
        response.headers["X-Request-ID"] = rid
        for name, value in self.edge.cors_headers(origin) if origin is not None else ():
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        await response(scope, receive, send)
        self._count(self._statuses(str(response.status_code)))
        self._observe(self._seconds, time.perf_counter() - started)


def redirect_headers(location: bytes, max_age: int) -> list[tuple[bytes, bytes]]:
    """A redirect's headers. The Location is the backend's URL for the authorized key; nothing
    from the request is in it."""
    return [(b"location", location), (b"cache-control", b"private, max-age=%d" % max_age), *_STATIC]


def session_key(grant_key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a grant key that authentication reads: credential, peer, forwarding headers."""
    return grant_key[1:]


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
