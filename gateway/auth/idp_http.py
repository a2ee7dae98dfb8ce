"""The one way the gateway reads JSON from an identity provider: discovery, JWKS, the token endpoint.

Bearer-token keys (``jwks.py``) and browser sign-in (``browser_client.py``) both fetch through
``IdpHttp``, so every answer from an issuer is held to the same bounds: one deadline for the whole
exchange (a server that trickles one byte a second cannot hold a fetch open past it), at most
``max_bytes`` read off the wire (a larger body is cut off, not read to its end), no redirects
followed, no content encoding accepted (a compressed body could inflate a thousandfold in memory), and
a JSON object or nothing. Every failure is one ``IdpError`` whose ``reason`` is one of a fixed set,
translated from httpx's exceptions in one table (as httpx's own ``map_httpcore_exceptions`` does),
so each caller maps one type to its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

MAX_BYTES = 1_000_000  # Okta's JWKS is about 2 KB, its discovery document about 5 KB
OK: frozenset[int] = frozenset({200})
# RFC 6749 section 5.2: a token endpoint answers its refusals (invalid_grant, ...) with 400 or 401 and JSON.
TOKEN_ANSWERS: frozenset[int] = OK | frozenset(range(400, 500))
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


class IdpFailure(StrEnum):
    """Why an identity provider's answer could not be used: a fixed set, safe for logs and labels."""

    UNREACHABLE = "unreachable"  # no connection, or it broke: DNS, refused, TLS, reset, not HTTP
    TIMEOUT = "timeout"  # no complete answer within the deadline
    STATUS = "status"  # a status the caller does not take (a redirect too: they are never followed)
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"  # not JSON, or content-encoded although identity was asked for
    NOT_OBJECT = "not_object"  # JSON, but not an object
    INVALID = "invalid"  # a JSON object that is not the document asked for (raised by the callers)


_PUBLIC = {
    IdpFailure.UNREACHABLE: "it cannot be reached",
    IdpFailure.TIMEOUT: "it did not answer in time",
    IdpFailure.STATUS: "it answered with an unexpected status",
    IdpFailure.TOO_LARGE: "its answer is too large",
    IdpFailure.NOT_JSON: "its answer is not JSON",
    IdpFailure.NOT_OBJECT: "its answer is not a JSON object",
}


class IdpError(Exception):
    """An identity provider's answer that cannot be used. The message names the URL (scheme, host
    and path only) and what was wrong with the answer, never a credential, code or body."""

    def __init__(self, reason: IdpFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def public(self) -> str:
        """Words for a client's answer: a fixed phrase per reason, or the document check that failed."""
        return _PUBLIC.get(self.reason, str(self))


def shown(url: str) -> str:
    """A URL for messages: without userinfo, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<an invalid URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"[:200]


@dataclass(frozen=True, slots=True)
class IdpHttp:
    """Bounded JSON requests to identity providers, over the gateway's shared ``httpx.AsyncClient``."""

    client: httpx.AsyncClient
    timeout: float = 5.0  # seconds for the whole exchange: connect, send, headers and body
    max_bytes: int = MAX_BYTES

    async def get(self, url: str) -> dict[str, Any]:
        return await self.fetch("GET", url)

    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                    content: bytes | str | None = None, accept: Collection[int] = OK) -> dict[str, Any]:
        """The JSON object ``url`` answers with a status in ``accept``; IdpError otherwise."""
        where = f"{method} {shown(url)}"
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._read(method, url, where, headers or {}, content, accept)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise IdpError(IdpFailure.TIMEOUT, f"{where} did not answer within {self.timeout:g}s") from exc
        except httpx.InvalidURL as exc:
            raise IdpError(IdpFailure.UNREACHABLE, f"{where}: not a URL that can be fetched") from exc
        except httpx.HTTPError as exc:  # every other transport failure, at connect time or mid-body
            raise IdpError(IdpFailure.UNREACHABLE, f"{where} failed: {type(exc).__name__}") from exc
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise IdpError(IdpFailure.NOT_JSON, f"{where} did not answer JSON") from exc
        if not isinstance(document, dict):
            raise IdpError(IdpFailure.NOT_OBJECT, f"{where} answered JSON that is not an object")
        return document

    async def _read(self, method: str, url: str, where: str, headers: Mapping[str, str],
                    content: bytes | str | None, accept: Collection[int]) -> bytes:
        async with self.client.stream(method, url, headers={**_HEADERS, **headers}, content=content,
                                      timeout=self.timeout, follow_redirects=False) as response:
            status = response.status_code
            if status not in accept:
                # Security: a redirect is never followed; keys come from the configured issuer's own URLs.
                hint = " (redirects are not followed: configure the final URL)" if 300 <= status < 400 else ""
                raise IdpError(IdpFailure.STATUS, f"{where} answered {status}{hint}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise IdpError(IdpFailure.NOT_JSON, f"{where} answered a {encoding[:20]}-encoded body, "
                                                    "though only identity was accepted")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise IdpError(IdpFailure.TOO_LARGE, f"{where} announced {declared} bytes, more than "
                                                     f"{self.max_bytes}")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self.max_bytes:  # stop reading: the rest is never received
                    raise IdpError(IdpFailure.TOO_LARGE, f"{where} answered more than {self.max_bytes} bytes")
            return bytes(body)
