"""AWS Signature Version 4: the pure primitives, shared by the S3 presigner and the ElastiCache IAM token.

A leaf module (no boto3, no network): the S3 backend builds its fast presigner on these, and the
Redis credential provider signs ElastiCache's ``connect`` token with them, so there is one SigV4
implementation in the project, checked byte for byte against botocore by the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SAFE = "-_.~"  # botocore.utils.SAFE_CHARS: the RFC 3986 unreserved set


class FrozenCredentials(Protocol):
    """What botocore's ``get_frozen_credentials()`` returns (``ReadOnlyCredentials``)."""

    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def token(self) -> str | None: ...


class Credentials(NamedTuple):
    """Plain static credentials, for tests and tools; production passes botocore's snapshot."""

    access_key: str
    secret_key: str
    token: str | None = None


def amz_date(unix_seconds: int) -> str:
    """``20130524T000000Z`` for a Unix time, as botocore's ``SIGV4_TIMESTAMP`` formats it."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(unix_seconds))


def derive_signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    """The SigV4 key chain: HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")."""
    key = hmac.digest(f"AWS4{secret_key}".encode(), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def presign_query(
    *,
    method: str,
    host: str,
    path: str,
    params: Sequence[tuple[str, str]],
    credentials: FrozenCredentials,
    region: str,
    service: str,
    signed_at: int,
    expires: int,
    payload_hash: str = EMPTY_SHA256,
) -> str:
    """The query string (without ``?``) of a SigV4 query-presigned request, as botocore's
    ``SigV4QueryAuth`` makes it: ``params``, then the ``X-Amz-*`` parameters, the signature last.

    Only the ``host`` header is signed. The canonical request sorts every parameter.
    """
    stamp = amz_date(signed_at)
    date = stamp[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    query = [
        *params,
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key}/{scope}"),
        ("X-Amz-Date", stamp),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if credentials.token:
        query.append(("X-Amz-Security-Token", credentials.token))
    encoded = [(quote(k, safe=SAFE), quote(v, safe=SAFE)) for k, v in query]
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(encoded))
    canonical_request = f"{method}\n{path}\n{canonical_query}\nhost:{host}\n\nhost\n{payload_hash}"
    string_to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
    key = derive_signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(key, string_to_sign.encode(), "sha256").hexdigest()
    # The query in botocore's order (as added), which only the signature covers sorted.
    return "&".join(f"{k}={v}" for k, v in encoded) + f"&X-Amz-Signature={signature}"
