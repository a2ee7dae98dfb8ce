"""Plain value types shared by every layer. No HTTP types, no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AuthMethod(StrEnum):
    ANONYMOUS = "anonymous"
    VENDOR_HMAC = "vendor_hmac"
    OIDC = "oidc"
    BROWSER_SESSION = "browser_session"  # signed in at /v1/auth/login; the issuer is the OIDC issuer's name
    CAPABILITY = "capability"  # a browser session's delegate, handed to an embedder's page (/v1/auth/connect)
    DEVELOPMENT = "development"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. ``issuer`` is the OIDC issuer's configured name, or the vendor's name for HMAC."""

    method: AuthMethod
    subject: str | None = None
    email: str | None = None
    issuer: str | None = None
    key_id: str | None = None
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    @property
    def anonymous(self) -> bool:
        return self.method is AuthMethod.ANONYMOUS


ANONYMOUS = Principal(method=AuthMethod.ANONYMOUS)


class DenyReason(StrEnum):
    """The fixed set of reasons a request is denied, for audit records and metric labels."""

    NO_RULES = "no_rules"
    NO_RULE_MATCHED = "no_rule_matched"
    KEY_NOT_ALLOWED = "key_not_allowed"
    UNKNOWN_DATASET = "unknown_dataset"
    INVALID_KEY = "invalid_key"
    UNAUTHENTICATED = "unauthenticated"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    RATE_LIMITED = "rate_limited"
    BAD_REQUEST = "bad_request"  # a request the gateway could not read (a batch body, say)
    CROSS_SITE = "cross_site"  # a browser session used by a page that is not an embedder
    CLIENT_CLOSED = "client_closed"  # the client left before its request arrived
    OUT_OF_SCOPE = "out_of_scope"  # a capability used beyond the datasets and prefixes it was handed out for
    ERROR = "error"  # the gateway failed before it could decide (a 5xx)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str | None = None
    reason: DenyReason | str | None = None  # a DenyReason; sign-in refusals have their own fixed set

    @property
    def label(self) -> str:
        """The rule name when allowed, the reason when denied (audit only: rule names are free text)."""
        if self.allowed:
            return self.rule or ""
        return str(self.reason)


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    expires_at: float  # Unix seconds
    signed_at: float  # Unix seconds; start of the time bucket

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.signed_at


@dataclass(slots=True)
class AuditRecord:
    """One decision. Never holds a token, a signature, a secret or a signed URL."""

    time: float
    request_id: str
    action: str
    dataset: str | None
    key: str | None
    decision: str
    rule: str | None
    reason: str | None
    status: int
    client_ip: str
    user_agent: str = ""
    principal: Principal = ANONYMOUS  # identifiers only (see audit.chain.principal_json)
    cache: str | None = None
    latency_ms: float = 0.0
    keys: list[str] | None = None
    denied: int | None = None
    bytes: int | None = None  # the object's bytes sent, for answers that carry the object itself
    policy: str | None = None  # the version of the policy the request was decided under


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """What a proxied read asks of the storage: only these headers are ever forwarded.

    ``range`` is one absolute ``bytes=first-last`` or ``bytes=first-`` range (suffix ranges and
    ``If-Range`` are resolved by the service); the conditionals are passed as the client sent them.
    """

    head: bool = False
    range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None


def _no_body() -> AsyncIterator[bytes]:
    async def empty() -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    return empty()


@dataclass(slots=True)
class Fetched:
    """The storage's answer to a :class:`FetchRequest`: 200, 206 or 304, the headers worth passing
    on (lower-case names, storage-specific ones already dropped), the body, and ``release``, which
    must be called once whatever happens: it returns the connection to the pool, or closes it when
    the body was not read to its end.

    Header values are byte-exact: the storage's bytes decoded as Latin-1, so ``value.encode("latin-1")``
    gives back exactly what it sent (a UTF-8 file name stays UTF-8), and they hold no control
    character (a value with one is dropped), so they can be forwarded as they are."""

    status: int
    headers: dict[str, str]
    size: int | None = None  # the whole object's size, when the answer tells it
    body: AsyncIterator[bytes] = field(default_factory=_no_body)
    release: Callable[[], None] = lambda: None
