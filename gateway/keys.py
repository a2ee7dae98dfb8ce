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
    """One pattern for a dataset's ``allow_keys``, whose ``.match(key)`` tells whether the key is allowed.

    ``*`` matches within one segment, ``**`` across segments, ``?`` one character other than ``/``;
    each glob is anchored at both ends. The pattern runs in O(len(key) x len(globs)): the plain
    translation (``*`` to ``[^/]*``, ``**`` to ``.*``) backtracks, and ``**a**a**a...**b`` held the
    event loop for seconds on a 30-character key. See :func:`_glob_pattern` for why this one cannot.
    """
    if not globs:
        return re.compile(r"\Z")  # matches no key (keys are never empty)
    return re.compile("|".join(f"(?:{_glob_pattern(glob)})" for glob in globs), re.DOTALL)


def _piece(text: str) -> str:
    return "".join("[^/]" if char == "?" else re.escape(char) for char in text)


def _glob_pattern(glob: str) -> str:
    r"""A glob as a regex that never backtracks into a choice it has made.

    The glob is chunks between ``**``, each chunk pieces between ``*`` (pieces are fixed-length:
    characters and ``?``). Matching is greedy and leftmost, and that is exact, by exchange:

    - after a ``*``, the next piece is taken at its first occurrence in the segment: a later one
      only leaves a shorter slash-free stretch before the next piece (a piece holding a ``/`` has one
      possible place, its slash on the segment's end). Written ``(?>[^/]*?P)``, atomic;
    - a chunk after a ``**`` starts in the first segment where it can: within one segment, if the
      first start fails, every later start fails too (its pieces can only land later), so each
      segment is tried once: ``(?:[^/]*/)*?`` then the chunk's atomic pieces. A chunk of one
      piece is just its first occurrence, ``(?>.*?P)``;
    - the last piece is anchored at the end: ``[^/]*P\Z`` (or ``.*P\Z`` after a ``**``).

    Each segment is then scanned a bounded number of times per piece, whatever the key holds.
    """
    chunks = [chunk.split("*") for chunk in glob.split("**")]
    out: list[str] = []
    for i, pieces in enumerate(chunks):
        first, middle, last = _piece(pieces[0]), [_piece(p) for p in pieces[1:-1]], _piece(pieces[-1])
        starred = "".join(f"(?>[^/]*?{p})" for p in middle)
        final = i == len(chunks) - 1
        if i == 0:
            head = first
        elif "/" in pieces[0] and len(pieces) > 1:  # it starts at a slash: one place per segment
            head = f".*{first}" if final else f".*?{first}"
        elif len(pieces) == 1:  # one piece after a **: its first occurrence, or at the very end
            out.append(f".*{first}\\Z" if final else f"(?>.*?{first})")
            continue
        else:
            head = f"(?:[^/]*/)*?(?>[^/]*?{first})"
        if len(pieces) == 1:
            out.append(f"{head}\\Z" if final else head)
        elif final:
            out.append(f"{head}{starred}[^/]*{last}\\Z")
        else:
            tail = f"{head}{starred}(?>[^/]*?{last})"
            out.append(tail if i == 0 else f"(?>{tail})")
    return "".join(out)
