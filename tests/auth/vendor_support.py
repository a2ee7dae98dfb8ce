"""Helpers for the vendor HMAC tests: vendors with real secrets, and requests signed by the helper
the vendor runs (gateway.vendor_signing), as the HTTP layer hands them to the authenticator."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from gateway.auth import AuthRequest
from gateway.auth.vendor import VendorAuthenticator
from gateway.config import Vendor
from gateway.errors import Unauthenticated
from gateway.vendor_signing import sign_request

SECRET_1 = "first-secret-for-tests-0123456789"
SECRET_2 = "second-secret-for-tests-987654321"
ENV = {"AQ_1": SECRET_1, "AQ_2": SECRET_2 + "\n", "OTHER": "other-vendor-secret-0123456789"}
URL = "https://gw.example.com/v1/datasets/driving/objects/images/cam%20a/1.jpg?format=json&size=l"
SIGN_URL = "https://gw.example.com/v1/sign"
BODY = b'{"dataset":"driving","keys":["images/cam a/1.jpg","images/2.jpg"]}'


def vendors(*, max_skew: float = 300, versions: list[int] | None = None) -> list[Vendor]:
    """``aquarium`` (keys aq-1, aq-2; ``versions`` when given, else the default) and ``other`` (ot-1)."""
    aquarium: dict[str, Any] = {
        "name": "aquarium",
        "max_skew": max_skew,
        "keys": [{"id": "aq-1", "secret_env": "AQ_1"}, {"id": "aq-2", "secret_env": "AQ_2"}],
    }
    if versions is not None:
        aquarium["signature_versions"] = versions
    return [
        Vendor.model_validate(aquarium),
        Vendor.model_validate({"name": "other", "keys": [{"id": "ot-1", "secret_env": "OTHER"}]}),
    ]


def signed(
    method: str = "GET",
    url: str = URL,
    *,
    key_id: str = "aq-1",
    secret: str = SECRET_1,
    timestamp: float = 1_700_000_000,
    body: bytes | None = None,
    version: int = 2,
    **overrides: str,
) -> AuthRequest:
    """A request as the HTTP layer hands it over: raw path and query, lower-case header names.
    ``overrides`` replace headers by lower-case name; the value ``"-"`` removes one."""
    headers = {
        k.lower(): v
        for k, v in sign_request(
            method, url, key_id=key_id, secret=secret, timestamp=int(timestamp), body=body, version=version
        ).items()
    }
    if body:
        headers["content-length"] = str(len(body))
    headers.update(overrides)
    path, _, query = url.split("://", 1)[1].partition("/")[2].partition("?")
    return AuthRequest(
        method, "/" + path, query, {k: v for k, v in headers.items() if v != "-"}, ipaddress.ip_address("203.0.113.9")
    )


def assert_no_secrets(exc: Unauthenticated, headers: dict[str, str] | Any) -> None:
    """The refusal names its scheme and never quotes a signature or a secret."""
    assert exc.scheme == "Gateway-HMAC"
    signature = headers.get("x-gateway-signature")
    if signature and len(signature) > 8:
        assert signature not in exc.detail
    for secret in ENV.values():
        assert secret.strip() not in exc.detail


async def reason_for(auth: VendorAuthenticator, request: AuthRequest) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await auth.authenticate(request)
    assert_no_secrets(caught.value, request.headers)
    return caught.value.reason
