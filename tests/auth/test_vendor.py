"""Vendor HMAC verification, driven by the same client the vendor runs (signature version 2, the
default; versions and bodies: test_vendor_body.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import AuthChain, AuthRequest
from gateway.auth.replay import MemoryReplayStore
from gateway.auth.vendor import VendorAuthenticator
from gateway.config import Vendor
from gateway.errors import ConfigError, Unauthenticated
from gateway.models import AuthMethod

from .support import FakeClock
from .vendor_support import ENV, SECRET_1, SECRET_2, URL, reason_for, signed, vendors

pytestmark = pytest.mark.anyio


@pytest.fixture
def make(wall: FakeClock) -> Callable[..., VendorAuthenticator]:
    def build(**kwargs: Any) -> VendorAuthenticator:
        replay = kwargs.pop("replay", None) or MemoryReplayStore(clock=wall)
        return VendorAuthenticator(
            kwargs.pop("vendors", None) or vendors(),
            replay=replay,
            clock=wall,
            environ=kwargs.pop("environ", ENV),
            **kwargs,
        )

    return build


async def test_valid_signature(make: Callable[..., VendorAuthenticator]) -> None:
    principal = await make().authenticate(signed())
    assert principal is not None
    assert (principal.method, principal.subject, principal.issuer, principal.key_id) == (
        AuthMethod.VENDOR_HMAC,
        "aquarium",
        "aquarium",
        "aq-1",
    )


async def test_no_vendor_headers_is_not_ours(make: Callable[..., VendorAuthenticator]) -> None:
    request = AuthRequest("GET", "/v1/x", "", {"authorization": "Bearer x"}, ipaddress.ip_address("10.0.0.1"))
    assert await make().authenticate(request) is None


async def test_both_rotation_keys_are_accepted(make: Callable[..., VendorAuthenticator]) -> None:
    auth = make()
    first = await auth.authenticate(signed(key_id="aq-1", secret=SECRET_1))
    second = await auth.authenticate(signed(key_id="aq-2", secret=SECRET_2))
    assert first is not None and second is not None
    assert (first.subject, first.key_id, second.subject, second.key_id) == ("aquarium", "aq-1", "aquarium", "aq-2")
    # A key's secret does not work under another key's id.
    assert await reason_for(auth, signed(key_id="aq-2", secret=SECRET_1, timestamp=1_700_000_001)) == "bad_signature"


@pytest.mark.parametrize(
    "drop",
    [
        ("x-gateway-key-id",),
        ("x-gateway-timestamp",),
        ("x-gateway-signature",),
        ("x-gateway-key-id", "x-gateway-timestamp"),
        ("x-gateway-timestamp", "x-gateway-signature"),
    ],
)
async def test_partial_headers(make: Callable[..., VendorAuthenticator], drop: tuple[str, ...]) -> None:
    assert await reason_for(make(), signed(**dict.fromkeys(drop, "-"))) == "missing_header"


async def test_empty_header_counts_as_missing(make: Callable[..., VendorAuthenticator]) -> None:
    assert await reason_for(make(), signed(**{"x-gateway-timestamp": ""})) == "missing_header"


@pytest.mark.parametrize(
    "header,value",
    [
        ("x-gateway-timestamp", "1700000000.5"),
        ("x-gateway-timestamp", "-1"),
        ("x-gateway-timestamp", "1e9"),
        ("x-gateway-timestamp", "9" * 40),
        ("x-gateway-signature", "zz" * 32),
        ("x-gateway-signature", "ab"),
        ("x-gateway-signature", "a" * 65),
        ("x-gateway-key-id", "aq-1\nX"),
        ("x-gateway-key-id", "../aq"),
    ],
)
async def test_malformed_headers(make: Callable[..., VendorAuthenticator], header: str, value: str) -> None:
    assert await reason_for(make(), signed(**{header: value})) == "malformed_header"


async def test_unknown_key(make: Callable[..., VendorAuthenticator]) -> None:
    assert await reason_for(make(), signed(key_id="aq-3")) == "unknown_key"


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
async def test_skew_both_ways(make: Callable[..., VendorAuthenticator], wall: FakeClock, offset: int) -> None:
    request = signed(timestamp=wall() + offset)
    with pytest.raises(Unauthenticated) as caught:
        await make().authenticate(request)
    assert caught.value.reason == "skew"
    assert ("ahead of" if offset > 0 else "behind") in caught.value.detail


@pytest.mark.parametrize("offset", [-300, 300])
async def test_skew_at_the_limit_is_accepted(
    make: Callable[..., VendorAuthenticator], wall: FakeClock, offset: int
) -> None:
    assert await make().authenticate(signed(timestamp=wall() + offset)) is not None


async def test_vendor_specific_skew(make: Callable[..., VendorAuthenticator], wall: FakeClock) -> None:
    auth = make(vendors=vendors(max_skew=30))
    assert await reason_for(auth, signed(timestamp=wall() - 31)) == "skew"
    assert await auth.authenticate(signed(timestamp=wall() - 29)) is not None


async def test_replay_is_refused_until_the_window_ends(
    make: Callable[..., VendorAuthenticator], wall: FakeClock
) -> None:
    replay = MemoryReplayStore(clock=wall)
    auth = make(replay=replay)
    request = signed(timestamp=wall())
    assert await auth.authenticate(request) is not None
    assert await reason_for(auth, request) == "replay"
    wall.advance(300)
    assert await reason_for(auth, request) == "replay"  # still inside the skew window
    wall.advance(2)
    assert await reason_for(auth, request) == "skew"  # and once it is not, skew refuses it anyway
    assert len(replay) == 0  # the nonce was kept exactly as long as it was needed


async def test_forged_requests_never_reach_the_replay_store(
    make: Callable[..., VendorAuthenticator], wall: FakeClock
) -> None:
    replay = MemoryReplayStore(clock=wall)
    auth = make(replay=replay)
    for i in range(20):
        await reason_for(auth, signed(secret="wrong-secret-0123456789", timestamp=wall() - i))
    assert len(replay) == 0


@pytest.mark.parametrize(
    "tamper",
    [
        {"method": "HEAD"},
        {"url": URL.replace("1.jpg", "2.jpg")},
        {"url": URL.replace("cam%20a", "cam%20b")},
        {"url": URL.replace("format=json", "format=xml")},
        {"url": URL + "&extra=1"},
        {"url": URL.split("?")[0]},
        {"url": URL.replace("/objects/images/cam%20a", "/objects/images%2Fcam%20a")},
    ],
)
async def test_tampering_breaks_the_signature(make: Callable[..., VendorAuthenticator], tamper: dict[str, str]) -> None:
    good = signed()
    bad = signed(tamper.get("method", "GET"), tamper.get("url", URL))
    request = AuthRequest(bad.method, bad.path, bad.query, good.headers, bad.client_ip)
    assert await reason_for(make(), request) == "bad_signature"


async def test_equivalent_encodings_verify(make: Callable[..., VendorAuthenticator]) -> None:
    # Signed with one spelling, sent with another: the canonical form is the same.
    good = signed()
    sent = AuthRequest(
        "get", "/v1/datasets/driving/objects/images/cam%20%61/1.jpg", "size=l&format=json", good.headers, good.client_ip
    )
    assert await make().authenticate(sent) is not None


async def test_raw_utf8_path_from_the_http_layer(make: Callable[..., VendorAuthenticator]) -> None:
    # The HTTP layer passes raw bytes as latin-1 text; the vendor signed the UTF-8 text.
    url = "https://gw.example.com/v1/datasets/d/objects/caf\u00e9.jpg"
    good = signed(url=url)
    wire = "/v1/datasets/d/objects/caf\u00e9.jpg".encode().decode("latin-1")
    sent = AuthRequest("GET", wire, "", good.headers, good.client_ip)
    assert await make().authenticate(sent) is not None


async def test_a_bad_vendor_credential_never_falls_through(make: Callable[..., VendorAuthenticator]) -> None:
    class Permissive:
        reads_authorization = False

        def carries(self, request: AuthRequest) -> bool:
            return False

        async def authenticate(self, request: AuthRequest) -> Any:
            raise AssertionError("the chain must stop at the vendor's refusal")

    with pytest.raises(Unauthenticated):
        await AuthChain([make(), Permissive()], fallback=Permissive()).authenticate(signed(key_id="aq-9"))


def test_secrets_load_from_env_and_file(tmp_path: Path, wall: FakeClock) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET_1 + "\n")
    config = [Vendor.model_validate({"name": "v", "keys": [{"id": "f", "secret_file": str(secret_file)}]})]
    auth = VendorAuthenticator(config, replay=MemoryReplayStore(), environ={})
    assert auth.key_ids == {"f"}


def test_every_secret_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    config = [
        Vendor.model_validate(
            {
                "name": "v",
                "keys": [
                    {"id": "unset", "secret_env": "NOT_SET"},
                    {"id": "blank", "secret_env": "BLANK"},
                    {"id": "short", "secret_env": "SHORT"},
                    {"id": "nofile", "secret_file": str(tmp_path / "missing")},
                    {"id": "empty", "secret_file": str(tmp_path / "empty")},
                    {"id": "ok", "secret_env": "OK"},
                ],
            }
        ),
        Vendor.model_validate({"name": "w", "keys": [{"id": "ok", "secret_env": "OK"}]}),
    ]
    environ = {"BLANK": "  ", "SHORT": "tiny-secret", "OK": "fine-secret-0123456789"}
    with pytest.raises(ConfigError) as caught:
        VendorAuthenticator(config, replay=MemoryReplayStore(), environ=environ)
    problems = caught.value.problems
    assert len(problems) == 6, problems
    text = str(caught.value)
    for needle in (
        "NOT_SET is not set",
        "BLANK is empty",
        "shorter than 16",
        "cannot read",
        "empty",
        "'ok' is used more than once",
    ):
        assert needle in text
    assert "tiny-secret" not in text and "fine-secret" not in text


async def test_replay_cannot_dodge_by_changing_case_or_spacing(
    make: Callable[..., VendorAuthenticator], wall: FakeClock
) -> None:
    auth = make()
    request = signed(timestamp=wall())
    assert await auth.authenticate(request) is not None
    signature = request.headers["x-gateway-signature"]
    for variant in (signature.upper(), f" {signature} "):
        again = AuthRequest(
            request.method,
            request.path,
            request.query,
            {**request.headers, "x-gateway-signature": variant},
            request.client_ip,
        )
        assert await reason_for(auth, again) == "replay"
