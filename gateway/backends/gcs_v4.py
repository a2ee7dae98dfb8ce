"""GCS V4 signed URLs (``GOOG4-RSA-SHA256`` and ``GOOG4-HMAC-SHA256``), path style.

One canonical-request builder serves every signer: a service-account key (RSA in process), IAM
``signBlob`` (RSA by Google, over the network) and HMAC keys. :meth:`V4Builder.prepare` returns the
URL without its signature and the exact bytes to sign; a signer turns those bytes into signature
bytes; :func:`finish` appends them as hex. Checked against Google's conformance vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote, urlsplit

from google.auth.crypt import RSASigner

RSA: Final = "GOOG4-RSA-SHA256"
HMAC: Final = "GOOG4-HMAC-SHA256"
Algorithm = Literal["GOOG4-RSA-SHA256", "GOOG4-HMAC-SHA256"]
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
MAX_EXPIRES = 604_800  # V4 signatures are valid for at most seven days
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SCOPE_TAIL = "/auto/storage/goog4_request"
_SAFE = "-_.~"

Signer = Callable[[bytes], bytes]
"""Signs a V4 string-to-sign and returns the raw signature bytes."""


def goog_date(unix_seconds: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(unix_seconds))


def _trim(value: str) -> str:
    return " ".join(value.split())  # strip, and collapse runs of spaces and tabs to one space


@dataclass(frozen=True, slots=True)
class Prepared:
    """A URL waiting for its signature, and the string-to-sign that produces it."""

    url: str
    string_to_sign: bytes
    canonical_request: str


def finish(prepared: Prepared, signature: bytes) -> str:
    return f"{prepared.url}&X-Goog-Signature={signature.hex()}"


class V4Builder:
    """Builds V4 canonical requests for one credential and endpoint.

    ``credential_id`` is the service account's email (RSA, signBlob) or the HMAC access id.
    ``endpoint`` is ``scheme://host[:port]``. The signed ``host`` header is the one the client
    will send: the host name, with the port when it is not the scheme's default (as
    google-cloud-storage signs an ``api_access_endpoint`` with a port); a server that verifies
    against the ``Host`` it receives refuses anything else.
    """

    def __init__(self, *, algorithm: Algorithm, credential_id: str, endpoint: str = DEFAULT_ENDPOINT) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query:
            raise ValueError(f"endpoint must look like https://host[:port], got {endpoint!r}")
        self.algorithm = algorithm
        self.credential_id = credential_id
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        default_port = {"http": 80, "https": 443}[parts.scheme]
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._host = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        self._credential = quote(credential_id, safe=_SAFE)

    def prepare(
        self,
        bucket: str,
        blob: str,
        *,
        signed_at: int,
        expires: int,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Prepared:
        if not 1 <= expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be within 1..{MAX_EXPIRES} seconds, got {expires}")
        stamp = goog_date(signed_at)
        scope = stamp[:8] + _SCOPE_TAIL
        signed: dict[str, str] = {"host": self._host}
        for name, value in (headers or {}).items():
            signed[name.lower().strip()] = _trim(value)
        names = sorted(signed)
        signed_headers = ";".join(names)
        params = [
            ("X-Goog-Algorithm", self.algorithm),
            ("X-Goog-Credential", f"{self._credential}%2F{quote(scope, safe=_SAFE)}"),
            ("X-Goog-Date", stamp),
            ("X-Goog-Expires", str(expires)),
            ("X-Goog-SignedHeaders", quote(signed_headers, safe=_SAFE)),
        ]
        params += [(quote(k, safe=_SAFE), quote(v, safe=_SAFE)) for k, v in (query or {}).items()]
        canonical_query = "&".join(f"{k}={v}" for k, v in sorted(params))
        path = f"{self._base_path}/{bucket}/{quote(blob, safe='/~')}"
        payload = signed.get("x-goog-content-sha256", UNSIGNED_PAYLOAD)
        canonical_headers = "".join(f"{name}:{signed[name]}\n" for name in names)
        canonical_request = (
            f"{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload}"
        )
        digest = hashlib.sha256(canonical_request.encode()).hexdigest()
        string_to_sign = f"{self.algorithm}\n{stamp}\n{scope}\n{digest}".encode()
        return Prepared(f"{self._origin}{path}?{canonical_query}", string_to_sign, canonical_request)

    def sign(self, signer: Signer, bucket: str, blob: str, *, signed_at: int, expires: int) -> str:
        """Prepare, sign and finish one GET URL with a synchronous signer."""
        prepared = self.prepare(bucket, blob, signed_at=signed_at, expires=expires)
        return finish(prepared, signer(prepared.string_to_sign))


def rsa_signer(private_key_pem: str, key_id: str | None = None) -> Signer:
    """RSA-SHA256 (PKCS#1 v1.5) with a service account's private key, in process."""
    signer = RSASigner.from_string(private_key_pem, key_id)  # type: ignore[no-untyped-call]

    def sign(message: bytes) -> bytes:
        return bytes(signer.sign(message))

    return sign


class HmacSigner:
    """``GOOG4-HMAC-SHA256`` with a GCS HMAC key; the day key is derived once per date.

    The date comes from the credential scope (third line) of the string-to-sign itself, so
    this signer has the same ``bytes -> bytes`` shape as the RSA and signBlob signers.
    """

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._day: tuple[bytes, bytes] = (b"", b"")

    def day_key(self, date: bytes) -> bytes:
        cached_date, key = self._day
        if cached_date != date:
            key = hmac.digest(b"GOOG4" + self._secret.encode(), date, "sha256")
            for part in (b"auto", b"storage", b"goog4_request"):
                key = hmac.digest(key, part, "sha256")
            self._day = (date, key)
        return key

    def __call__(self, string_to_sign: bytes) -> bytes:
        lines = string_to_sign.split(b"\n")
        if len(lines) != 4 or not lines[0].startswith(b"GOOG4-HMAC-SHA256"):
            raise ValueError("not a GOOG4-HMAC-SHA256 string-to-sign")
        return hmac.digest(self.day_key(lines[2][:8]), string_to_sign, "sha256")
