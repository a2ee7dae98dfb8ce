"""A URL's own signature (``?exp=&sig=``), read from the raw query string.

Gateway URLs (proxy datasets) and local-disk URLs carry their credential in the query. It is read
without percent-decoding: the gateway wrote ``exp`` as digits and ``sig`` as base64url, so any other
spelling of the same values (``%41`` for ``A``, a leading zero) is not a URL it wrote, and is refused
by the signature check rather than decoded into one that passes.
"""

from __future__ import annotations

from typing import Literal, NamedTuple


class UrlSignature(NamedTuple):
    kind: Literal["gateway", "local"]
    exp: str
    sig: str


def url_signature(query: str, kind: Literal["gateway", "local"]) -> UrlSignature | None:
    """The ``exp`` and ``sig`` of a raw query string, as sent; None when it has neither. Either one
    missing or given twice is an empty value, which no signature check accepts."""
    if "exp=" not in query and "sig=" not in query:
        return None
    exp: list[str] = []
    sig: list[str] = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "exp":
            exp.append(value)
        elif name == "sig":
            sig.append(value)
    if not exp and not sig:
        return None  # "exp=" was inside another parameter's value
    return UrlSignature(kind, exp[0] if len(exp) == 1 else "", sig[0] if len(sig) == 1 else "")
