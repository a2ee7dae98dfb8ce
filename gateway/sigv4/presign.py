"""A fast SigV4 query presigner for S3 GET/HEAD URLs, byte-for-byte equal to boto3's.

boto3's ``generate_presigned_url`` costs ~100-200 µs per URL: it walks the operation model, the
endpoint ruleset and the event system for every call. Everything except the object key and the
time is constant for one bucket, so this module resolves the bucket's base URL once (with botocore
itself, so the host, the port and the addressing style are exactly boto3's), caches the derived
day signing key, and per URL does only: quote the key, hash the canonical request, one HMAC.

The output is the same string boto3 produces for the same inputs, query order included:
operation parameters first (in the order given), then ``X-Amz-Algorithm``, ``-Credential``,
``-Date``, ``-Expires``, ``-SignedHeaders``, ``-Security-Token`` and ``-Signature``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote, urlsplit

import boto3
import botocore
from botocore.config import Config

# The primitives live in a leaf module, shared with the ElastiCache IAM token (gateway.redis.auth).
from gateway.sigv4.primitives import ALGORITHM, SAFE, Credentials, FrozenCredentials, amz_date, derive_signing_key

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_EXPIRES = 604_800  # SigV4 query signatures are valid for at most seven days
_SAFE = SAFE
_PROBE_KEY = "k"
_SIGNING_KEY_CACHE_SIZE = 16

__all__ = ["ALGORITHM", "MAX_EXPIRES", "Credentials", "FrozenCredentials", "SigV4Presigner", "amz_date",
           "bucket_base_url", "derive_signing_key"]


def bucket_base_url(
    session: boto3.session.Session,
    *,
    bucket: str,
    region: str,
    endpoint_url: str | None = None,
    addressing_style: Literal["auto", "path", "virtual"] = "auto",
) -> str:
    """Ask botocore which URL a key of ``bucket`` lives under, without credentials or network.

    An unsigned client runs boto3's own endpoint rules (virtual vs path style, dotted bucket
    names, the global us-east-1 endpoint, custom endpoints with ports and base paths), so the
    presigner never has to re-implement them. Returns e.g. ``https://b.s3.amazonaws.com/``
    or ``http://127.0.0.1:4568/b/``: the URL of an object is this plus the encoded key.
    """
    client = session.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": addressing_style}),
    )
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY})
    base, _, query = url.partition("?")
    if query or not base.endswith("/" + _PROBE_KEY):  # pragma: no cover - botocore contract
        raise RuntimeError(f"unexpected unsigned S3 URL shape for bucket {bucket!r}")
    return base[: -len(_PROBE_KEY)]


class _KeyedSha256:
    """HMAC-SHA256 with the key's inner and outer pads hashed once (RFC 2104).

    ``hmac.new`` re-derives both pads on every call; copying two prepared hash states is
    about 3x faster, which is most of the per-URL cost.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        padded = key.ljust(64, b"\0")  # SigV4 keys are 32 bytes, shorter than the block size
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _host_header(url: str) -> str:
    """The ``host`` value botocore signs: lowercase, userinfo dropped, default port dropped."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class SigV4Presigner:
    """Presigns ``GET``/``HEAD`` URLs for the objects under one S3 base URL.

    ``base_url`` comes from :func:`bucket_base_url`. ``params`` are fixed operation parameters
    by their query names (``response-content-type``, ``response-content-disposition``), in the
    order boto3 would receive them. Instances are safe to share between threads: the only
    mutable state is the signing-key cache, and a lost race only recomputes a key.
    """

    def __init__(self, base_url: str, *, region: str, params: Mapping[str, str] | None = None) -> None:
        if not base_url.endswith("/"):
            raise ValueError("base_url must end with '/'")
        self.base_url = base_url
        self.region = region
        self._path = urlsplit(base_url).path
        self._host = _host_header(base_url)
        self._origin = base_url[: len(base_url) - len(self._path)]
        self._scope_tail = f"/{region}/s3/aws4_request"
        self._credential_tail = quote(self._scope_tail, safe=_SAFE)
        pairs = [(quote(k, safe=_SAFE), quote(v, safe=_SAFE)) for k, v in (params or {}).items()]
        for name, _ in pairs:
            # Lowercase names sort after every "X-Amz-*" name; that lets the canonical query be
            # assembled without sorting per URL.
            if not name[:1].islower():
                raise ValueError(f"operation parameter {name!r} must start with a lowercase letter")
        self._op_query = "".join(f"{k}={v}&" for k, v in pairs)
        self._op_canonical = "".join(f"&{k}={v}" for k, v in sorted(pairs))
        self._keys: dict[tuple[str, str], _KeyedSha256] = {}
        self._credential: tuple[str, str, str] = ("", "", "")
        self._dates: tuple[int, str] = (-1, "")

    def _signer(self, secret_key: str, date: str) -> _KeyedSha256:
        """The day signing key, cached by (secret, date); the region is fixed per instance."""
        cache_key = (secret_key, date)
        signer = self._keys.get(cache_key)
        if signer is None:
            if len(self._keys) >= _SIGNING_KEY_CACHE_SIZE:
                self._keys.clear()  # rotated secrets and past days: never worth keeping
            signer = _KeyedSha256(derive_signing_key(secret_key, date, self.region))
            self._keys[cache_key] = signer
        return signer

    def _credential_param(self, access_key: str, date: str) -> str:
        cached_key, cached_date, value = self._credential
        if cached_key != access_key or cached_date != date:
            value = quote(access_key, safe=_SAFE) + "%2F" + date + self._credential_tail
            self._credential = (access_key, date, value)
        return value

    def _timestamp(self, signed_at: int) -> str:
        cached_at, stamp = self._dates
        if cached_at != signed_at:
            stamp = amz_date(signed_at)
            self._dates = (signed_at, stamp)
        return stamp

    def presign(
        self,
        key: str,
        credentials: FrozenCredentials,
        *,
        signed_at: int,
        expires: int,
        method: str = "GET",
    ) -> str:
        """The presigned URL for object ``key`` (already joined with any prefix).

        ``signed_at`` becomes ``X-Amz-Date``; the URL is valid for ``expires`` seconds after it.
        """
        if not 1 <= expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be within 1..{MAX_EXPIRES} seconds, got {expires}")
        access_key, secret_key, token = credentials.access_key, credentials.secret_key, credentials.token
        stamp = self._timestamp(signed_at)
        date = stamp[:8]
        # botocore serializes the {Key+} label with percent_encode(safe="/~"), and S3 signs the
        # path as sent (no normalization), so the URL path and the canonical path are the same.
        path = self._path + quote(key, safe="/~")
        credential = self._credential_param(access_key, date)
        auth = (
            f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={stamp}"
            f"&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        )
        if token is not None:
            encoded_token = quote(token, safe=_SAFE)
            query = f"{self._op_query}{auth}&X-Amz-Security-Token={encoded_token}"
            canonical_query = (
                f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={stamp}"
                f"&X-Amz-Expires={expires}&X-Amz-Security-Token={encoded_token}"
                f"&X-Amz-SignedHeaders=host{self._op_canonical}"
            )
        else:
            query = self._op_query + auth
            canonical_query = auth + self._op_canonical
        canonical_request = (
            f"{method}\n{path}\n{canonical_query}\nhost:{self._host}\n\nhost\n{UNSIGNED_PAYLOAD}"
        )
        string_to_sign = (
            f"{ALGORITHM}\n{stamp}\n{date}{self._scope_tail}\n"
            + hashlib.sha256(canonical_request.encode()).hexdigest()
        )
        signature = self._signer(secret_key, date).hexdigest(string_to_sign.encode())
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"
