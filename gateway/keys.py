"""Object-key canonicalization. The key that is authorized is exactly the key that is signed."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from gateway.errors import InvalidKey

MAX_KEY_BYTES = 1024
# A segment that is one or two dots, each written as "." or percent-encoded any number of times
# ("%2e", "%252e", ...): a traversal attempt, whatever decoding a later hop applies.
_DOT_SEGMENT = re.compile(r"(?:^|/)(?:\.|%(?:25)*2e){1,2}(?:/|\Z)", re.IGNORECASE)
_BAD_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")  # control characters, a backslash


def canonical_key(raw: str | bytes, max_bytes: int = MAX_KEY_BYTES) -> str:
    """Decode a key taken from the request path (still percent-encoded) and validate it.

    Rejects, with :class:`InvalidKey`: invalid UTF-8, NUL and control characters (CR and LF
    included), backslashes, ``.`` and ``..`` segments in any encoding, empty segments, and keys
    over ``max_bytes`` (1024, less the dataset's prefix). Percent-decoding happens exactly once; the
    result is the object key.
    """
    raw_bytes = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        decoded = (unquote_to_bytes(raw_bytes) if b"%" in raw_bytes else raw_bytes).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidKey("the key is not valid UTF-8") from None
    return validate_key(decoded, max_bytes)


def validate_key(key: str, max_bytes: int = MAX_KEY_BYTES) -> str:
    """Validate an already-decoded key (batch requests send keys as JSON strings)."""
    if not key:
        raise InvalidKey("the key is empty")
    try:
        size = len(key.encode("utf-8"))  # lone surrogates (from JSON "\ud800") cannot be encoded
    except UnicodeEncodeError:
        raise InvalidKey("the key is not valid UTF-8") from None
    if size > max_bytes:
        # The limit is the storage's (S3: 1024 bytes), for the key under the dataset's prefix.
        raise InvalidKey(f"the key is longer than {max_bytes} bytes"
                         + (" (with the dataset's prefix, the storage's 1024-byte limit)" if max_bytes < MAX_KEY_BYTES
                            else ""))
    if _BAD_CHARACTER.search(key):
        if "\\" in key:
            raise InvalidKey("the key contains a backslash")
        raise InvalidKey("the key contains a control character (NUL, CR, LF or similar)")
    if key[0] == "/" or key[-1] == "/" or "//" in key:
        raise InvalidKey("the key has an empty segment (leading, trailing or double slash)")
    # Plain string tests first (they cover nearly every key); the pattern only where "%" could hide a dot.
    if ("%" in key or key[0] == "." or "/." in key) and _DOT_SEGMENT.search(key):
        raise InvalidKey("the key has a '.' or '..' segment")
    return key


def join_prefix(prefix: str, key: str) -> str:
    """Join a backend prefix and a canonical key; the result always stays under the prefix."""
    full = prefix + key
    if not full.startswith(prefix):  # pragma: no cover - concatenation guarantees it
        raise InvalidKey("the key leaves the dataset prefix")
    return full


def compile_globs(globs: list[str]) -> re.Pattern[str]:
    """``*`` matches within one segment, ``**`` across segments, ``?`` one character."""
    parts = []
    for glob in globs:
        out = []
        i = 0
        while i < len(glob):
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
            elif glob[i] == "*":
                out.append("[^/]*")
                i += 1
            elif glob[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(glob[i]))
                i += 1
        parts.append("".join(out))
    return re.compile("(?:" + "|".join(parts) + r")\Z", re.DOTALL)
