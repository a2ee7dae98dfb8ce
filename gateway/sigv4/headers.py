"""SigV4 ``Authorization`` headers for S3 ``GET``/``HEAD`` in proxy mode (byte for byte botocore's).

Proxy delivery authenticates to S3 with headers, not with a query-string URL, so that a bucket
policy may deny ``s3:authType = REST-QUERY-STRING`` and proxy mode keeps working. The payload is
``UNSIGNED-PAYLOAD`` (a GET has none); signed are ``host``, ``x-amz-content-sha256``, ``x-amz-date``
and, for temporary credentials, ``x-amz-security-token``. ``Range`` and the conditionals travel
unsigned: SigV4 lets a client leave headers out of the signature, and S3 accepts it.

The key derivation and the cached day key are the presigner's (gateway/backends/sigv4.py).
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote, urlsplit

from gateway.sigv4.presign import (
    ALGORITHM,
    UNSIGNED_PAYLOAD,
    FrozenCredentials,
    _host_header,
    _KeyedSha256,
    amz_date,
    derive_signing_key,
)

_CACHE_SIZE = 16


class SigV4HeaderSigner:
    """Signs requests for the objects under one S3 base URL (from ``bucket_base_url``)."""

    def __init__(self, base_url: str, *, region: str) -> None:
        if not base_url.endswith("/"):
            raise ValueError("base_url must end with '/'")
        parts = urlsplit(base_url)
        self.region = region
        self._path = parts.path
        self._host = _host_header(base_url)
        self._origin = base_url[: len(base_url) - len(self._path)]
        self._scope_tail = f"/{region}/s3/aws4_request"
        self._keys: dict[tuple[str, str], _KeyedSha256] = {}

    def url(self, key: str) -> str:
        """The object's URL (no query: the credential is in the headers)."""
        return self._origin + self._path + quote(key, safe="/~")

    def _signer(self, secret_key: str, date: str) -> _KeyedSha256:
        signer = self._keys.get((secret_key, date))
        if signer is None:
            if len(self._keys) >= _CACHE_SIZE:
                self._keys.clear()
            signer = self._keys[(secret_key, date)] = _KeyedSha256(derive_signing_key(secret_key, date, self.region))
        return signer

    def headers(self, method: str, key: str, credentials: FrozenCredentials, *, now: int) -> dict[str, str]:
        """The headers that authenticate ``method`` on object ``key`` (already joined with any prefix)."""
        stamp = amz_date(now)
        date = stamp[:8]
        path = self._path + quote(key, safe="/~")
        token = credentials.token
        canonical_headers = f"host:{self._host}\nx-amz-content-sha256:{UNSIGNED_PAYLOAD}\nx-amz-date:{stamp}\n"
        signed = "host;x-amz-content-sha256;x-amz-date"
        if token:
            canonical_headers += f"x-amz-security-token:{' '.join(token.split())}\n"
            signed += ";x-amz-security-token"
        canonical_request = f"{method}\n{path}\n\n{canonical_headers}\n{signed}\n{UNSIGNED_PAYLOAD}"
        scope = f"{date}{self._scope_tail}"
        string_to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        signature = self._signer(credentials.secret_key, date).hexdigest(string_to_sign.encode())
        headers = {
            "Authorization": f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, "
                             f"Signature={signature}",
            "X-Amz-Content-SHA256": UNSIGNED_PAYLOAD,
            "X-Amz-Date": stamp,
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        return headers
