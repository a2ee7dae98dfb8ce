"""Vendor request signing (HMAC-SHA256): the helper a vendor runs on its side.

This module is shipped to vendors as is. It uses the standard library only and imports nothing
from the gateway package. The gateway verifies with the very same ``canonical_string``, so the
two sides cannot disagree. The scheme is specified, with test vectors, in docs/vendor-auth.md.

Version 2 (the default) signs seven lines joined by ``\\n`` (no trailing newline); the last is the
SHA-256 of the body (here the empty body of a GET), also sent in ``X-Gateway-Content-SHA256``::

    GATEWAY-HMAC-SHA256-V2
    GET
    /v1/datasets/driving-2024/objects/images/cam%20front/0001.jpg
    format=json&size=large
    1700000000
    aquarium-2024-01
    e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

and the signature is the lower-case hex HMAC-SHA256 of its UTF-8 bytes under the secret. Version 1
is the first six lines under the tag ``GATEWAY-HMAC-SHA256``: it does not cover the body, so the
gateway accepts it only from the vendors its operator still allows it for.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote, unquote_to_bytes, urlsplit

__all__ = [
    "CONTENT_SHA256_HEADER",
    "EMPTY_SHA256",
    "KEY_ID_HEADER",
    "SCHEME",
    "SCHEME_V2",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "VERSION_HEADER",
    "canonical_path",
    "canonical_query",
    "canonical_string",
    "content_sha256",
    "format_headers",
    "normalize_secret",
    "sign",
    "sign_request",
]

SCHEME = "GATEWAY-HMAC-SHA256"  # version 1: the body is not signed
SCHEME_V2 = "GATEWAY-HMAC-SHA256-V2"  # version 2: the body's SHA-256 is the seventh line
KEY_ID_HEADER = "X-Gateway-Key-Id"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"
VERSION_HEADER = "X-Gateway-Signature-Version"
CONTENT_SHA256_HEADER = "X-Gateway-Content-SHA256"
SIGNATURE_HEADER = "X-Gateway-Signature"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# RFC 3986 unreserved characters are the only ones left unencoded in the canonical form.
_UNRESERVED = "-._~"


def _wire_bytes(value: str | bytes) -> bytes:
    # A str is text as a person writes it (non-ASCII means UTF-8, as every HTTP client encodes it).
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _encode(raw: bytes) -> str:
    """Percent-decode once, then percent-encode every byte except A-Z a-z 0-9 - . _ ~ (upper-case hex)."""
    return quote(unquote_to_bytes(raw), safe=_UNRESERVED)


def canonical_path(path: str | bytes) -> str:
    """The path as sent, with each '/'-separated segment decoded once and re-encoded.

    A literal ``/`` separates segments and stays; an encoded ``%2F`` stays encoded, so the two never
    collide. ``+`` in a path is a literal plus (``%2B``). An empty path is ``/``.
    """
    raw = _wire_bytes(path) or b"/"
    return "/".join(_encode(segment) for segment in raw.split(b"/"))


def canonical_query(query: str | bytes) -> str:
    """The query (without '?') as ``name=value`` pairs, each side decoded once and re-encoded, sorted.

    Pairs are split on ``&``; empty pairs are dropped; a pair without ``=`` has an empty value; ``+``
    means a space (as in HTML forms and in the gateway's own query parsing). Sorting is by the encoded
    name, then the encoded value, comparing ASCII bytes.
    """
    raw = _wire_bytes(query)
    pairs: list[tuple[str, str]] = []
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        pairs.append((_encode(name.replace(b"+", b" ")), _encode(value.replace(b"+", b" "))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def content_sha256(body: bytes | str) -> str:
    """Lower-case hex SHA-256 of the body's bytes exactly as sent (a str is sent as UTF-8)."""
    return hashlib.sha256(_wire_bytes(body)).hexdigest()


def canonical_string(
    method: str, path: str | bytes, query: str | bytes, timestamp: int | str, key_id: str,
    content_sha256: str | None = None,
) -> str:
    """The exact text that is signed: scheme tag, METHOD, path, query, timestamp, key id.

    With ``content_sha256`` (64 hex digits) it is version 2: the tag ``GATEWAY-HMAC-SHA256-V2`` and the
    digest, lower-cased, as a seventh line. Without it, version 1. The tags differ, so a signature of one
    version never verifies as the other: stripping the version 2 headers cannot downgrade a request.
    """
    lines = [method.upper(), canonical_path(path), canonical_query(query), str(timestamp), key_id]
    if content_sha256 is None:
        return "\n".join([SCHEME, *lines])
    return "\n".join([SCHEME_V2, *lines, content_sha256.lower()])


def normalize_secret(secret: bytes | str) -> bytes:
    """The secret's bytes: UTF-8 for text, surrounding whitespace removed (files often end in '\\n')."""
    return _wire_bytes(secret).strip()


def sign(canonical: str, secret: bytes | str) -> str:
    """Lower-case hex HMAC-SHA256 of the canonical string."""
    return hmac.new(normalize_secret(secret), canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_request(
    method: str,
    url: str,
    *,
    key_id: str,
    secret: bytes | str,
    timestamp: int | None = None,
    body: bytes | str | None = None,
    version: int = 2,
) -> dict[str, str]:
    """Headers that authenticate one request for ``method url``; add them to the request as they are.

    ``url`` may be absolute or just a path with a query. Sign exactly the URL and the body you send:
    the path and query are normalized (see docs/vendor-auth.md) but the body is signed byte for byte,
    so pass the very bytes you will send (serialize JSON once). No ``body`` is the empty body, as for a
    GET. A signature is accepted once, within the gateway's allowed clock skew (300 s by default).

    ``version=1`` makes the old headers, which do not cover the body (for tests and for gateways whose
    operator still allows version 1); it refuses a ``body``, since it could not protect it.
    """
    parts = urlsplit(url)
    ts = int(time.time()) if timestamp is None else int(timestamp)
    if version == 1:
        if body is not None:
            raise ValueError("signature version 1 does not cover the body; sign with version 2")
        signature = sign(canonical_string(method, parts.path, parts.query, ts, key_id), secret)
        return {KEY_ID_HEADER: key_id, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature}
    if version != 2:
        raise ValueError(f"signature version must be 1 or 2, not {version!r}")
    digest = content_sha256(b"" if body is None else body)
    signature = sign(canonical_string(method, parts.path, parts.query, ts, key_id, digest), secret)
    return {KEY_ID_HEADER: key_id, TIMESTAMP_HEADER: str(ts), VERSION_HEADER: "2", CONTENT_SHA256_HEADER: digest,
            SIGNATURE_HEADER: signature}


def format_headers(headers: Mapping[str, str]) -> str:
    """``Name: value`` lines, as curl's ``-H`` and HTTP itself write them."""
    return "\n".join(f"{name}: {value}" for name, value in headers.items())
