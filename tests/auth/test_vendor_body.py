"""Signature version 2: the body digest, the per-vendor versions, and ``check_body``.

Every request here is signed by the helper the vendor runs (gateway.vendor_signing) with a real
secret, and verified by the real authenticator with a real (in-memory) replay store.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.datastructures import Headers

from gateway.auth import AuthRequest
from gateway.auth.replay import MemoryReplayStore
from gateway.auth.vendor import VendorAuthenticator, check_body
from gateway.config import AuthConfig, Vendor
from gateway.errors import Unauthenticated

from .support import FakeClock
from .test_vendor_signing import VECTORS
from .vendor_support import BODY, ENV, SECRET_1, SIGN_URL, assert_no_secrets, reason_for, signed, vendors

pytestmark = pytest.mark.anyio


@pytest.fixture
def replay(wall: FakeClock) -> MemoryReplayStore:
    return MemoryReplayStore(clock=wall)


@pytest.fixture
def make(wall: FakeClock, replay: MemoryReplayStore) -> Callable[..., VendorAuthenticator]:
    def build(versions: list[int] | None = None) -> VendorAuthenticator:
        return VendorAuthenticator(vendors(versions=versions), replay=replay, clock=wall, environ=ENV)

    return build


def body_reason(headers: Mapping[str, str], body: bytes) -> str:
    with pytest.raises(Unauthenticated) as caught:
        check_body(headers, body)
    assert_no_secrets(caught.value, {k.lower(): v for k, v in headers.items()})
    return caught.value.reason


async def test_version_2_with_a_body_verifies_and_its_body_checks(make: Callable[..., VendorAuthenticator]) -> None:
    request = signed("POST", SIGN_URL, body=BODY)
    assert request.headers["x-gateway-signature-version"] == "2"
    principal = await make().authenticate(request)
    assert principal is not None and (principal.subject, principal.key_id) == ("aquarium", "aq-1")
    check_body(request.headers, BODY)  # the very bytes that were signed


async def test_version_2_get_signs_the_empty_body(make: Callable[..., VendorAuthenticator]) -> None:
    request = signed()
    assert request.headers["x-gateway-content-sha256"] == hashlib.sha256(b"").hexdigest()
    assert await make().authenticate(request) is not None
    check_body(request.headers, b"")
    assert body_reason(request.headers, b"{}") == "body_mismatch"


@pytest.mark.parametrize(
    "sent",
    [
        BODY.replace(b"images/2.jpg", b"images/3.jpg"),  # another key
        BODY.replace(b'"driving"', b'"medical"'),  # another dataset
        BODY + b"\n",  # one byte more
        BODY.replace(b",", b", "),  # the same JSON, serialized again
        b"",
    ],
)
async def test_a_tampered_body_is_refused_by_check_body(
    make: Callable[..., VendorAuthenticator], sent: bytes
) -> None:
    # Intercepted before it reached the gateway: the headers are intact, so the signature verifies...
    request = signed("POST", SIGN_URL, body=BODY)
    assert await make().authenticate(request) is not None
    # ...and the body, once read, is not the one that was signed.
    assert body_reason(request.headers, sent) == "body_mismatch"


async def test_a_body_and_a_matching_digest_swapped_in_break_the_signature(
    make: Callable[..., VendorAuthenticator],
) -> None:
    request = signed("POST", SIGN_URL, body=BODY)
    other = BODY.replace(b'"driving"', b'"medical"')
    forged = signed("POST", SIGN_URL, body=BODY, **{"x-gateway-content-sha256": hashlib.sha256(other).hexdigest()})
    assert forged.headers["x-gateway-signature"] == request.headers["x-gateway-signature"]
    assert await reason_for(make(), forged) == "bad_signature"


async def test_stripping_version_2_headers_cannot_downgrade(make: Callable[..., VendorAuthenticator]) -> None:
    # Even where version 1 is allowed, a version 2 signature never verifies as version 1.
    request = signed("POST", SIGN_URL, body=BODY,
                     **{"x-gateway-signature-version": "-", "x-gateway-content-sha256": "-"})
    assert await reason_for(make([1, 2]), request) == "bad_signature"


async def test_version_1_is_refused_by_default(
    make: Callable[..., VendorAuthenticator], replay: MemoryReplayStore
) -> None:
    auth = make()
    get = signed(version=1)
    post = signed("POST", SIGN_URL, version=1, **{"content-length": str(len(BODY))})
    for request in (get, post):
        with pytest.raises(Unauthenticated) as caught:
            await auth.authenticate(request)
        assert caught.value.reason == "version_not_allowed"
        assert "signature version 1 does not cover the request body" in caught.value.detail
        assert "from vendor 'aquarium' (it may use version 2;" in caught.value.detail
    assert "this request has one" in caught.value.detail  # the POST carried a body
    assert len(replay) == 0  # refused signatures are not remembered
    # A forged version 1 signature is reported as a forgery, not as a version question.
    assert await reason_for(auth, signed(version=1, secret="wrong-secret-0123456789")) == "bad_signature"


async def test_version_1_is_accepted_where_configured(make: Callable[..., VendorAuthenticator]) -> None:
    auth = make([1, 2])
    request = signed("POST", SIGN_URL, version=1, **{"content-length": str(len(BODY))})
    principal = await auth.authenticate(request)
    assert principal is not None and principal.key_id == "aq-1"
    check_body(request.headers, BODY)  # version 1 signs no body: nothing to hold it to
    # Explicitly marked version 1 is version 1 too; version 2 stays accepted alongside.
    assert await auth.authenticate(signed(version=1, timestamp=1_700_000_001,
                                          **{"x-gateway-signature-version": "1"})) is not None
    assert await auth.authenticate(signed("POST", SIGN_URL, body=BODY)) is not None
    # The setting is per vendor: "other" still signs version 2 only.
    other = signed(version=1, key_id="ot-1", secret=ENV["OTHER"])
    assert await reason_for(auth, other) == "version_not_allowed"


async def test_version_1_only_refuses_version_2(make: Callable[..., VendorAuthenticator]) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await make([1]).authenticate(signed("POST", SIGN_URL, body=BODY))
    assert caught.value.reason == "version_not_allowed"
    assert "signature version 2 is not accepted" in caught.value.detail and "version 1;" in caught.value.detail


@pytest.mark.parametrize("digest", ["-", ""])
async def test_version_2_without_the_digest_is_refused(
    make: Callable[..., VendorAuthenticator], digest: str
) -> None:
    request = signed("POST", SIGN_URL, body=BODY, **{"x-gateway-content-sha256": digest})
    assert await reason_for(make(), request) == "missing_digest"
    assert body_reason(request.headers, BODY) == "missing_digest"  # check_body fails closed on its own


@pytest.mark.parametrize(
    "overrides",
    [
        {"x-gateway-signature-version": "3"},
        {"x-gateway-signature-version": ""},
        {"x-gateway-signature-version": "2, 2"},  # repeated: the HTTP layer joins the values
        {"x-gateway-content-sha256": "ab" * 31},
        {"x-gateway-content-sha256": "zz" * 32},
        {"x-gateway-content-sha256": f"{'a' * 64}, {'b' * 64}"},
    ],
)
async def test_malformed_version_2_headers(make: Callable[..., VendorAuthenticator], overrides: dict[str, str]) -> None:
    assert await reason_for(make([1, 2]), signed("POST", SIGN_URL, body=BODY, **overrides)) == "malformed_header"


async def test_a_digest_on_a_version_1_request_is_refused(make: Callable[..., VendorAuthenticator]) -> None:
    # The vendor believes its body is covered; version 1 does not sign the header, so say so.
    digest = hashlib.sha256(BODY).hexdigest()
    request = signed("POST", SIGN_URL, version=1, **{"x-gateway-content-sha256": digest})
    with pytest.raises(Unauthenticated) as caught:
        await make([1, 2]).authenticate(request)
    assert caught.value.reason == "malformed_header" and "X-Gateway-Signature-Version: 2" in caught.value.detail
    assert body_reason(request.headers, BODY) == "malformed_header"


async def test_an_upper_case_digest_verifies(make: Callable[..., VendorAuthenticator]) -> None:
    digest = hashlib.sha256(BODY).hexdigest().upper()
    request = signed("POST", SIGN_URL, body=BODY, **{"x-gateway-content-sha256": digest})
    assert await make().authenticate(request) is not None
    check_body(request.headers, BODY)


async def test_replay_is_still_refused_whatever_the_body(
    make: Callable[..., VendorAuthenticator], replay: MemoryReplayStore
) -> None:
    auth = make()
    request = signed("POST", SIGN_URL, body=BODY)
    assert await auth.authenticate(request) is not None
    check_body(request.headers, BODY)
    # The same headers again, with the same body or another: the signature was used.
    assert await reason_for(auth, request) == "replay"
    assert len(replay) == 1


async def test_an_intercepted_request_spends_its_signature(make: Callable[..., VendorAuthenticator]) -> None:
    # An attacker sends a captured request on first with its own body: refused once the body is read,
    # and the vendor's own copy, arriving later, is a replay (sign a retry afresh, as the docs say).
    auth = make()
    request = signed("POST", SIGN_URL, body=BODY)
    assert await auth.authenticate(request) is not None
    assert body_reason(request.headers, b'{"dataset":"medical","keys":["x"]}') == "body_mismatch"
    assert await reason_for(auth, request) == "replay"


def test_check_body_reads_starlette_headers_in_any_case() -> None:
    request = signed("POST", SIGN_URL, body=BODY)
    raw = [(k.encode(), v.encode()) for k, v in request.headers.items()]
    check_body(Headers(raw=raw), BODY)
    assert body_reason(Headers(raw=raw), BODY + b" ") == "body_mismatch"
    # Names as a client writes them: still found, still checked (never silently skipped).
    written = {k.title().replace("Sha256", "SHA256"): v for k, v in request.headers.items()}
    assert "X-Gateway-Content-SHA256" in written
    assert body_reason(written, BODY + b" ") == "body_mismatch"


def test_check_body_refuses_a_repeated_digest() -> None:
    request = signed("POST", SIGN_URL, body=BODY)
    raw = [(k.encode(), v.encode()) for k, v in request.headers.items()]
    other = hashlib.sha256(b"other").hexdigest()
    twice = Headers(raw=[*raw, (b"x-gateway-content-sha256", other.encode())])
    # Starlette's get() would answer the first, which matches: a repeat is refused instead.
    assert body_reason(twice, BODY) == "malformed_header"


def test_check_body_leaves_other_credentials_alone() -> None:
    # No vendor signature: nothing was signed, so a stray digest header proves nothing either way.
    headers = {"authorization": "Bearer x", "x-gateway-content-sha256": hashlib.sha256(b"a").hexdigest(),
               "x-gateway-signature-version": "2"}
    check_body(headers, b"b")


def test_the_body_mismatch_detail_helps_without_leaking() -> None:
    request = signed("POST", SIGN_URL, body=BODY)
    with pytest.raises(Unauthenticated) as caught:
        check_body(request.headers, BODY + b"\n")
    assert f"{len(BODY) + 1}-byte body" in caught.value.detail
    assert SECRET_1 not in caught.value.detail and request.headers["x-gateway-signature"] not in caught.value.detail


@pytest.mark.parametrize("vector", [v for v in VECTORS if v.version == 2], ids=lambda v: v.title.split(":")[0])
async def test_the_published_vectors_verify_at_the_gateway(vector: Any, wall: FakeClock) -> None:
    fields = vector.fields
    config = [Vendor.model_validate({"name": "aquarium", "keys": [{"id": fields["key id"], "secret_env": "S"}]})]
    wall.now = float(fields["timestamp"])
    auth = VendorAuthenticator(config, replay=MemoryReplayStore(clock=wall), clock=wall,
                               environ={"S": fields["secret"]})
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in vector.headers.splitlines())}
    path, _, query = fields["url"].split("://", 1)[1].partition("/")[2].partition("?")
    request = AuthRequest(fields["method"], "/" + path, query, headers, ipaddress.ip_address("203.0.113.9"))
    assert await auth.authenticate(request) is not None
    check_body(headers, vector.body or b"")
    assert body_reason(headers, (vector.body or b"") + b"x") == "body_mismatch"


def test_signature_versions_default_to_2_only() -> None:
    assert Vendor.model_validate({"name": "v", "keys": [{"id": "k", "secret_env": "E"}]}).signature_versions == [2]
    both = Vendor.model_validate({"name": "v", "keys": [{"id": "k", "secret_env": "E"}], "signature_versions": [1, 2]})
    assert both.signature_versions == [1, 2]


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        ([3], "got [3]"),
        ([2, 0], "got [0]"),
        ([True], "got [True]"),
        (["2"], "got ['2']"),
        ([2.0], "got [2.0]"),
        ([], "at least one"),
        ([2, 2], "listed twice"),
        (2, "list"),
    ],
)
def test_signature_versions_are_validated(versions: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AuthConfig.model_validate(
            {"vendors": [{"name": "v", "keys": [{"id": "k", "secret_env": "E"}], "signature_versions": versions}]}
        )
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [("vendors", 0, "signature_versions")]
    assert message in errors[0]["msg"]


def test_every_config_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        AuthConfig.model_validate({"vendors": [
            {"name": "v", "keys": [{"id": "k", "secret_env": "E"}], "signature_versions": [3]},
            {"name": "w", "keys": [{"id": "l", "secret_env": "E"}], "signature_version": [1]},  # a typo
        ]})
    locations = {e["loc"] for e in caught.value.errors()}
    assert locations == {("vendors", 0, "signature_versions"), ("vendors", 1, "signature_version")}
