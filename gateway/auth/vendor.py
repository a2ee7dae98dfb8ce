"""Vendor request signatures (HMAC-SHA256), verified with the same canonical string the vendor signs.

The scheme, its headers and test vectors are in docs/vendor-auth.md; the signing side is
gateway/vendor_signing.py. Version 2 signs the body's SHA-256 as declared in a header: the
authenticator checks the signature over that header, and ``check_body`` checks the body against it
once a route has read the body.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway import vendor_signing
from gateway.auth import AuthRequest, ReplayStore
from gateway.config import Vendor, VendorKey
from gateway.errors import ConfigError, Unauthenticated
from gateway.models import AuthMethod, Principal

SCHEME = "Gateway-HMAC"
MIN_SECRET_BYTES = 16
_HEADER_NAMES = (vendor_signing.KEY_ID_HEADER, vendor_signing.TIMESTAMP_HEADER,
                 vendor_signing.SIGNATURE_HEADER)
_HEADERS = tuple(name.lower() for name in _HEADER_NAMES)
_VERSION = vendor_signing.VERSION_HEADER.lower()
_DIGEST = vendor_signing.CONTENT_SHA256_HEADER.lower()
_SIGNATURE_NAME = vendor_signing.SIGNATURE_HEADER.lower()
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = _HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_VERSIONS = {"1": 1, "2": 2}


class VendorReason(StrEnum):
    """Why a vendor signature was refused: a fixed set, safe for audit records and metric labels."""

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    UNKNOWN_KEY = "unknown_key"
    SKEW = "skew"
    BAD_SIGNATURE = "bad_signature"
    VERSION_NOT_ALLOWED = "version_not_allowed"  # a valid version 1 signature from a vendor held to version 2
    MISSING_DIGEST = "missing_digest"  # version 2 without X-Gateway-Content-SHA256
    REPLAY = "replay"
    BODY_MISMATCH = "body_mismatch"  # check_body: the body is not the one the signature covers


@dataclass(frozen=True, slots=True)
class _Key:
    vendor: str
    key_id: str
    secret: bytes
    max_skew: float
    versions: frozenset[int]  # the signature versions this vendor may use
    # Who a valid signature with this key proves: the same object every time (it is immutable),
    # so that what is remembered per principal (the policy's rule memo, the audit JSON) is reused.
    principal: Principal

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"_Key(vendor={self.vendor!r}, key_id={self.key_id!r})"


def _fail(reason: VendorReason, detail: str) -> Unauthenticated:
    return Unauthenticated(detail, scheme=SCHEME, reason=str(reason))


def _load_secret(key: VendorKey, environ: Mapping[str, str], where: str) -> tuple[bytes | None, str | None]:
    """Read one key's secret; returns (secret, None) or (None, problem). Problems never quote the secret."""
    if key.secret_env is not None:
        value = environ.get(key.secret_env)
        if value is None:
            return None, f"{where}.secret_env: environment variable {key.secret_env} is not set"
        secret = vendor_signing.normalize_secret(value)
        source = f"environment variable {key.secret_env}"
    else:
        assert key.secret_file is not None  # noqa: S101 - VendorKey guarantees exactly one source
        try:
            secret = vendor_signing.normalize_secret(key.secret_file.read_bytes())
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return None, f"{where}.secret_file: cannot read {key.secret_file} ({reason})"
        source = f"file {key.secret_file}"
    if not secret:
        return None, f"{where}: the secret in {source} is empty"
    # A short shared secret can be brute-forced offline from one signed request.
    if len(secret) < MIN_SECRET_BYTES:
        return None, f"{where}: the secret in {source} is shorter than {MIN_SECRET_BYTES} bytes"
    return secret, None


class VendorAuthenticator:
    """Verifies ``X-Gateway-Key-Id``, ``X-Gateway-Timestamp`` and ``X-Gateway-Signature`` (and, in
    version 2, the signed ``X-Gateway-Content-SHA256``; the body itself is ``check_body``'s).

    Secrets are loaded once, here; every problem (unset variable, unreadable or empty file, short
    secret, duplicate key id) is reported at once as a ConfigError. Several keys per vendor may be
    active at once, which is how keys are rotated. A request with none of the headers is not ours
    (None); a request with any of them is ours and either verifies or is refused with a reason.
    """

    def __init__(
        self,
        vendors: Sequence[Vendor],
        *,
        replay: ReplayStore,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._replay = replay
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        problems: list[str] = []
        for v, vendor in enumerate(vendors):
            for k, key in enumerate(vendor.keys):
                where = f"auth.vendors.{v}.keys.{k}"
                if key.id in self._keys:
                    problems.append(f"{where}.id: key id {key.id!r} is used more than once")
                    continue
                secret, problem = _load_secret(key, env, where)
                if problem is not None:
                    problems.append(problem)
                elif secret is not None:
                    principal = Principal(method=AuthMethod.VENDOR_HMAC, subject=vendor.name, issuer=vendor.name,
                                          key_id=key.id)
                    self._keys[key.id] = _Key(vendor.name, key.id, secret, vendor.max_skew,
                                              frozenset(vendor.signature_versions), principal)
        if problems:
            raise ConfigError("auth.vendors", problems)

    reads_authorization = False

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def carries(self, request: AuthRequest) -> bool:
        headers = request.headers
        return _HEADERS[0] in headers or _HEADERS[1] in headers or _HEADERS[2] in headers

    async def authenticate(self, request: AuthRequest) -> Principal | None:
        headers = request.headers
        values = [_header(headers, name) for name in _HEADERS]
        if all(value is None for value in values):
            return None
        missing = [name for name, value in zip(_HEADER_NAMES, values, strict=True) if not value]
        if missing:
            raise _fail(VendorReason.MISSING_HEADER, f"the request is missing {', '.join(missing)}")
        key_id, timestamp, signature = (value.strip() for value in values if value is not None)
        if not _KEY_ID.match(key_id):
            raise _fail(VendorReason.MALFORMED_HEADER, f"{vendor_signing.KEY_ID_HEADER} is not a valid key id")
        if not _TIMESTAMP.match(timestamp):
            raise _fail(VendorReason.MALFORMED_HEADER, f"{vendor_signing.TIMESTAMP_HEADER} must be Unix seconds")
        if not _SIGNATURE.match(signature):
            raise _fail(VendorReason.MALFORMED_HEADER, f"{vendor_signing.SIGNATURE_HEADER} must be 64 hex digits")
        digest = _signed_digest(headers)

        key = self._keys.get(key_id)
        if key is None:
            raise _fail(VendorReason.UNKNOWN_KEY, f"key id {key_id!r} is not configured")

        now = self._clock()
        ts = int(timestamp)
        drift = now - ts
        # The window bounds how long a captured request stays usable, and how long nonces are kept.
        if abs(drift) > key.max_skew:
            direction = "behind" if drift > 0 else "ahead of"
            raise _fail(
                VendorReason.SKEW,
                f"the timestamp is {abs(drift):.0f}s {direction} the gateway's clock (allowed: {key.max_skew:.0f}s)",
            )

        # Version 2 signs the declared body digest; check_body later holds the body to it.
        canonical = vendor_signing.canonical_string(request.method, _raw(request.path), _raw(request.query),
                                                    timestamp, key_id, digest)
        expected = vendor_signing.sign(canonical, key.secret)
        # Constant-time comparison: timing must not reveal how many leading characters matched.
        if not hmac.compare_digest(expected, signature.lower()):
            covered = "method, path, query, timestamp and key id (signature version 1)" if digest is None else \
                "method, path, query, timestamp, key id and body digest (signature version 2)"
            raise _fail(VendorReason.BAD_SIGNATURE, f"the signature does not match the {covered}")

        version = 1 if digest is None else 2
        # Checked once the signature is known good: a forgery is reported as one, and only the key's
        # holder learns which versions its vendor may use. Version 1 leaves the body unsigned.
        if version not in key.versions:
            why = "" if version == 2 else " does not cover the request body" + (
                " (and this request has one)" if _declares_body(headers) else "") + " and"
            raise _fail(
                VendorReason.VERSION_NOT_ALLOWED,
                f"signature version {version}{why} is not accepted from vendor {key.vendor!r} "
                f"(it may use version {' or '.join(map(str, sorted(key.versions)))}; see docs/vendor-auth.md)",
            )

        # Only a valid signature reaches the replay store, so forged requests cannot fill it.
        # The nonce is a hash: the signature itself is never stored.
        nonce = "vendor-hmac:" + hashlib.sha256(signature.lower().encode("ascii")).hexdigest()
        remaining = ts + key.max_skew - now + 1.0
        if not await self._replay.first_seen(nonce, remaining):
            raise _fail(VendorReason.REPLAY, "this signature was already used; sign each request afresh")

        return key.principal


def check_body(headers: Mapping[str, str], body: bytes) -> None:
    """Refuse a version 2 vendor request whose body is not the one its signature covers.

    The authenticator runs before the body is read, so it can only check the signature over the
    declared ``X-Gateway-Content-SHA256``; this holds the body to that declaration. Call it on every
    request whose body is used, once the whole body has been read and before any of it is used
    (parsed, logged, acted on), after authentication succeeded. ``headers`` are the request's own
    (Starlette's ``request.headers`` or any mapping; names in any case). Raises Unauthenticated with
    reason ``body_mismatch`` (or ``missing_digest`` / ``malformed_header`` for headers that never
    authenticated). A request without a vendor signature, or signed with version 1 (which signs no
    body and is accepted only from vendors whose ``signature_versions`` list 1), passes unchanged.
    """
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in (_SIGNATURE_NAME, _VERSION, _DIGEST):
            found.setdefault(lower, []).append(value)
    if not found.get(_SIGNATURE_NAME):
        return  # not a vendor request: nothing was signed
    # A repeated header is ambiguous (which one did the signature cover?): fail closed.
    repeated = [name for name, values in found.items() if len(values) > 1]
    if repeated:
        raise _fail(VendorReason.MALFORMED_HEADER, f"{', '.join(repeated)} must be sent once")
    digest = _signed_digest({name: values[0] for name, values in found.items()})
    if digest is None:
        return
    # Not a secret, but compared in constant time all the same: there is no reason not to.
    if not hmac.compare_digest(vendor_signing.content_sha256(body), digest):
        raise _fail(
            VendorReason.BODY_MISMATCH,
            f"the SHA-256 of the {len(body)}-byte body is not the signed {vendor_signing.CONTENT_SHA256_HEADER}: "
            "the body was changed after signing, or was not signed byte for byte as sent",
        )


def _signed_digest(headers: Mapping[str, str]) -> str | None:
    """The body digest that a request's signature covers (version 2), or None (version 1)."""
    given = headers.get(_VERSION)
    version = 1 if given is None else _VERSIONS.get(given.strip())
    if version is None:
        raise _fail(VendorReason.MALFORMED_HEADER, f"{vendor_signing.VERSION_HEADER} must be 1 or 2")
    digest = headers.get(_DIGEST)
    if version == 1:
        if digest is not None:
            # The vendor believes its body is protected, but version 1 does not sign this header.
            raise _fail(
                VendorReason.MALFORMED_HEADER,
                f"{vendor_signing.CONTENT_SHA256_HEADER} is signed only in version 2: "
                f"send {vendor_signing.VERSION_HEADER}: 2 and sign the version 2 string",
            )
        return None
    if not digest:
        raise _fail(
            VendorReason.MISSING_DIGEST,
            f"signature version 2 needs {vendor_signing.CONTENT_SHA256_HEADER}: the SHA-256 of the body "
            "(of the empty body for a GET)",
        )
    digest = digest.strip()
    if not _HEX64.match(digest):
        raise _fail(VendorReason.MALFORMED_HEADER,
                    f"{vendor_signing.CONTENT_SHA256_HEADER} must be 64 hex digits (the SHA-256 of the body)")
    return digest.lower()


def _declares_body(headers: Mapping[str, str]) -> bool:
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (length != "" and length != "0")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name)  # names are lower-case in an AuthRequest (gateway.api.context.header_map)


def _raw(value: str) -> bytes:
    # The HTTP layer hands over the raw path and query decoded as latin-1 (one char per byte sent),
    # as gateway.keys does; anything outside latin-1 can only have been text, so it is UTF-8.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")
