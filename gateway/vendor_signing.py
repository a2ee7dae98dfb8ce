"""Vendor request signing (HMAC-SHA256): the helper a vendor runs on its side.

This module is shipped to vendors as is. It uses the standard library only and imports nothing
from the gateway package. The gateway verifies with the very same ``canonical_string``, so the
two sides cannot disagree. The scheme is specified, with test vectors, in docs/vendor-auth.md.

The canonical string is six lines joined by ``\\n`` (no trailing newline)::

    GATEWAY-HMAC-SHA256
    GET
    /v1/datasets/driving-2024/objects/images/cam%20front/0001.jpg
    format=json&size=large
    1700000000
    aquarium-2024-01

and the signature is the lower-case hex HMAC-SHA256 of its UTF-8 bytes under the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote, unquote_to_bytes, urlsplit

__all__ = [
    "KEY_ID_HEADER",
    "SCHEME",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "canonical_path",
    "canonical_query",
    "canonical_string",
    "format_headers",
    "normalize_secret",
    "sign",
    "sign_request",
]

SCHEME = "GATEWAY-HMAC-SHA256"
KEY_ID_HEADER = "X-Gateway-Key-Id"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"
SIGNATURE_HEADER = "X-Gateway-Signature"

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


def canonical_string(method: str, path: str | bytes, query: str | bytes, timestamp: int | str, key_id: str) -> str:
    """The exact text that is signed: scheme tag, METHOD, path, query, timestamp, key id."""
    return "\n".join([SCHEME, method.upper(), canonical_path(path), canonical_query(query), str(timestamp), key_id])


def normalize_secret(secret: bytes | str) -> bytes:
    """The secret's bytes: UTF-8 for text, surrounding whitespace removed (files often end in '\\n')."""
    return _wire_bytes(secret).strip()


def sign(canonical: str, secret: bytes | str) -> str:
    """Lower-case hex HMAC-SHA256 of the canonical string."""
    return hmac.new(normalize_secret(secret), canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_request(
    method: str, url: str, *, key_id: str, secret: bytes | str, timestamp: int | None = None
) -> dict[str, str]:
    """Headers that authenticate one request for ``method url``; add them to the request as they are.

    ``url`` may be absolute or just a path with a query. Sign exactly the URL you send: the path and
    query are normalized (see docs/vendor-auth.md) but a different path or query is a different
    request. A signature is accepted once, within the gateway's allowed clock skew (300 s by default).
    """
    parts = urlsplit(url)
    ts = int(time.time()) if timestamp is None else int(timestamp)
    signature = sign(canonical_string(method, parts.path, parts.query, ts, key_id), secret)
    return {KEY_ID_HEADER: key_id, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature}


def format_headers(headers: Mapping[str, str]) -> str:
    """``Name: value`` lines, as curl's ``-H`` and HTTP itself write them."""
    return "\n".join(f"{name}: {value}" for name, value in headers.items())
