"""The gateway's own URLs for ``delivery: proxy`` datasets (``?format=json`` and ``POST /v1/sign``):
each expires within its dataset's ``url_ttl``, and is refused over a real socket once expired, when
signed under another key or for another client address, and when its ``exp`` was moved on.

The refused URLs are built here with :class:`GatewayUrls` and the gateway's signing key, each with
a signature that is valid for what it claims, so that only the property under test is wrong; a
URL built the same way with nothing wrong is accepted (the control that makes the refusals count).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from gateway.app import create_app
from gateway.service import GatewayUrls
from gateway.settings import Settings
from tests.delivery.conftest import BUCKET, OBJECTS, PREFIX, proxy_policy
from tests.delivery.leaks import assert_no_leak
from tests.e2e.helpers import assert_error
from tests.signin.support import MovableClock
from tests.support import RunningGateway, free_port, serve_app

SIGNING_KEY = "p" * 32  # GATEWAY_SIGNING_KEY of this module's gateway
HERE = "127.0.0.1"  # the tests' client address, as the gateway sees it
OTHER = "127.0.0.2"  # another loopback address this host can send from
TTLS = {"vision": 300, "brief": 40}  # vision: defaults.url_ttl (300s); brief: its own url_ttl
KEYS = ["big.bin", "images/caf\u00e9/\u65e5\u672c\u8a9e \u00fc.png", "images/100%/x=1&y=2.txt"]
EXTRA = """  brief:
    delivery: proxy
    url_ttl: 40s
    backend: {{kind: s3, bucket: {bucket}, prefix: {prefix}, endpoint_url: "{endpoint}", addressing_style: path}}
    rules:
      - {{name: lab, anonymous: true, networks: [127.0.0.0/8]}}
"""


@dataclass
class Gateway:
    server: RunningGateway
    endpoint: str  # s3rver's, for the leak scan
    clock: MovableClock
    audit: Path

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def gw(s3_store: str, s3_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway-urls")
    audit = root / "audit.jsonl"
    extra = EXTRA.format(bucket=BUCKET, prefix=PREFIX, endpoint=s3_store)
    policy = proxy_policy(root / "policy.yaml", s3_store, origin="http://app.example.test:3000", extra=extra)
    sink = f"version: 1\naudit: {{sinks: [{{kind: file, path: '{audit}'}}]}}\n"
    policy.write_text(policy.read_text().replace("version: 1\n", sink))
    clock = MovableClock()
    port = free_port()
    app = create_app(Settings(port=port, config=policy, signing_key=SIGNING_KEY), clock=clock)
    with serve_app(app, port) as server:
        yield Gateway(server, s3_store, clock, audit)


@pytest.fixture
def clock(gw: Gateway) -> Iterator[MovableClock]:
    """The gateway's clock, for a test to move; back to real time afterwards."""
    gw.clock.offset = 0.0
    yield gw.clock
    gw.clock.offset = 0.0


def exp_of(url: str) -> int:
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {"exp", "sig"}, url
    assert query["exp"][0].isdigit(), url
    return int(query["exp"][0])


def stamp(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def object_url(gw: Gateway, dataset: str, key: str) -> str:
    return f"{gw.url}/v1/datasets/{dataset}/objects/{quote(key)}"


def build(gw: Gateway, dataset: str, key: str, *, exp: int, client: str = HERE,
          signing_key: str = SIGNING_KEY) -> str:
    """A gateway URL for ``dataset``/``key`` with a signature valid for exactly this ``exp``,
    ``client`` and ``signing_key``."""
    [url] = GatewayUrls(signing_key.encode(), gw.url).sign(dataset, [key], client, signed_at=exp, expires_in=0)
    assert url.expires_at == exp and exp_of(url.url) == exp
    return url.url


def with_exp(url: str, exp: str) -> str:
    """The same URL (and signature) with another ``exp``."""
    base, _, query = url.partition("?")
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    return f"{base}?exp={exp}&sig={params['sig']}"


def fetch(gw: Gateway, url: str, client: httpx.Client | None = None) -> tuple[httpx.Response, str]:
    """GET ``url`` over the socket with a fresh request id; the answer, scanned for storage detail."""
    request_id = f"gw-url-{uuid.uuid4().hex}"
    response = (client or httpx).get(url, headers={"X-Request-ID": request_id}, timeout=10)
    assert_no_leak(response, gw.endpoint)
    return response, request_id


def audit_record(gw: Gateway, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in gw.audit.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["request_id"] == request_id:
                return record  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"no audit record for {request_id}")


def assert_refused(gw: Gateway, response: httpx.Response, request_id: str, reason: str, words: str) -> None:
    """A 403 JSON refusal that tells nothing of the storage, audited as a denial for ``reason``."""
    body = assert_error(response, 403, "forbidden")
    assert words in body["detail"], body
    for mark in (BUCKET, PREFIX.rstrip("/"), gw.endpoint.split("//", 1)[1], "x-amz", "X-Amz"):
        assert mark not in response.text and mark not in str(response.headers), mark
    assert "location" not in response.headers
    record = audit_record(gw, request_id)
    assert (record["action"], record["decision"], record["reason"], record["status"]) == (
        "proxy", "deny", reason, 403), record


def assert_served(gw: Gateway, url: str, key: str, client: httpx.Client | None = None) -> None:
    response, _ = fetch(gw, url, client)
    assert response.status_code == 200, response.text
    assert response.content == OBJECTS[key]


# -- (a) every URL handed out expires within its dataset's url_ttl ----------------------------


@pytest.mark.parametrize("dataset", sorted(TTLS))
def test_json_answers_expire_within_the_url_ttl(gw: Gateway, dataset: str) -> None:
    ttl = TTLS[dataset]
    for key in KEYS:
        for how in ({"params": {"format": "json"}}, {"headers": {"Accept": "application/json"}}):
            before = time.time()
            answer = httpx.get(object_url(gw, dataset, key), timeout=10, **how)  # type: ignore[arg-type]
            after = time.time()
            assert_no_leak(answer, gw.endpoint)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["url"].startswith(f"{gw.url}/v1/datasets/{dataset}/objects/"), body
            exp = exp_of(body["url"])
            assert before < exp <= after + ttl + 1, (before, exp, after, ttl)
            # Signed at the start of a bucket half the TTL wide: at least half its life is left.
            assert exp - after >= ttl / 2 - 1, (exp, after, ttl)
            assert stamp(body["expires_at"]) == exp, body
            served = httpx.get(body["url"], timeout=10)
            assert served.status_code == 200 and served.content == OBJECTS[key]
            # A cache may keep the bytes no longer than the URL lives.
            max_age = int(served.headers["cache-control"].rsplit("max-age=", 1)[1])
            assert 0 <= max_age < exp - before, (max_age, exp, before)


@pytest.mark.parametrize("dataset", sorted(TTLS))
def test_batch_results_expire_within_the_url_ttl(gw: Gateway, dataset: str) -> None:
    ttl = TTLS[dataset]
    before = time.time()
    batch = httpx.post(f"{gw.url}/v1/sign", json={"dataset": dataset, "keys": sorted(OBJECTS)}, timeout=10)
    after = time.time()
    assert_no_leak(batch, gw.endpoint)
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["key"] for r in results] == sorted(OBJECTS)
    for result in results:
        assert result["url"].startswith(f"{gw.url}/v1/datasets/{dataset}/objects/"), result
        exp = exp_of(result["url"])
        assert before < exp <= after + ttl + 1, (before, exp, after, ttl, result)
        assert exp - after >= ttl / 2 - 1, (exp, after, ttl)
        assert stamp(result["expires_at"]) == exp, result


def test_a_url_handed_out_works_until_its_exp_and_is_refused_after(gw: Gateway, clock: MovableClock) -> None:
    body = httpx.get(object_url(gw, "brief", "big.bin"), params={"format": "json"}, timeout=10).json()
    exp = exp_of(body["url"])
    clock.offset = exp - time.time() - 2  # two seconds before the end: still good
    assert_served(gw, body["url"], "big.bin")
    clock.offset = exp - time.time() + 2  # two seconds after it
    response, request_id = fetch(gw, body["url"])
    assert_refused(gw, response, request_id, "expired", "expired")


# -- (b) an expired URL, correctly signed, is refused -----------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_a_url_built_with_the_signing_key_is_accepted(gw: Gateway, key: str) -> None:
    # The control for the refusals below: these URLs are built exactly as the gateway builds them.
    assert_served(gw, build(gw, "vision", key, exp=int(time.time()) + 120), key)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("ago", [1, 5, 3600, 10 * 365 * 86400])
def test_an_expired_url_with_a_valid_signature_is_refused(gw: Gateway, key: str, ago: int) -> None:
    url = build(gw, "vision", key, exp=int(time.time()) - ago)
    response, request_id = fetch(gw, url)
    assert_refused(gw, response, request_id, "expired", "has expired")


def test_an_expired_url_is_refused_for_head_too(gw: Gateway) -> None:
    url = build(gw, "vision", "big.bin", exp=int(time.time()) - 5)
    response = httpx.head(url, timeout=10)
    assert_no_leak(response, gw.endpoint)
    assert response.status_code == 403 and response.content == b""
    assert "etag" not in response.headers and "content-range" not in response.headers


# -- (c) another key, another address, another object -----------------------------------------


@pytest.mark.parametrize("signing_key", ["q" * 32, "p" * 31 + "q", "p" * 33])
def test_a_url_signed_under_another_key_is_refused(gw: Gateway, signing_key: str) -> None:
    url = build(gw, "vision", "big.bin", exp=int(time.time()) + 120, signing_key=signing_key)
    response, request_id = fetch(gw, url)
    assert_refused(gw, response, request_id, "bad_signature", "is not valid")


@pytest.mark.parametrize("client", [OTHER, "10.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.0.1 "])
def test_a_url_signed_for_another_address_is_refused(gw: Gateway, client: str) -> None:
    url = build(gw, "vision", "big.bin", exp=int(time.time()) + 120, client=client)
    response, request_id = fetch(gw, url)
    assert_refused(gw, response, request_id, "bad_signature", "is not valid")


def test_a_url_is_good_from_the_address_it_was_signed_for_only(gw: Gateway) -> None:
    url = build(gw, "vision", "big.bin", exp=int(time.time()) + 120, client=OTHER)
    with httpx.Client(transport=httpx.HTTPTransport(local_address=OTHER), timeout=10) as other:
        assert_served(gw, url, "big.bin", other)
        mine = build(gw, "vision", "big.bin", exp=int(time.time()) + 120)
        response, request_id = fetch(gw, mine, other)
    assert_refused(gw, response, request_id, "bad_signature", "is not valid")


def test_a_url_for_one_object_or_dataset_does_not_open_another(gw: Gateway) -> None:
    exp = int(time.time()) + 120
    signed = build(gw, "vision", "big.bin", exp=exp)
    query = signed.split("?", 1)[1]
    for dataset, key in (("vision", "tiny.png"), ("typed", "big.bin"), ("brief", "big.bin")):
        response, request_id = fetch(gw, f"{object_url(gw, dataset, key)}?{query}")
        assert_refused(gw, response, request_id, "bad_signature", "is not valid")


# -- (d) a changed exp ------------------------------------------------------------------------


def test_an_expired_url_extended_with_its_old_signature_is_refused(gw: Gateway) -> None:
    expired = build(gw, "vision", "big.bin", exp=int(time.time()) - 5)
    for later in (int(time.time()) + 60, int(time.time()) + 3600, 999_999_999_999):
        response, request_id = fetch(gw, with_exp(expired, str(later)))
        assert_refused(gw, response, request_id, "bad_signature", "is not valid")


def test_a_handed_out_url_with_a_later_exp_is_refused(gw: Gateway) -> None:
    body = httpx.get(object_url(gw, "vision", "big.bin"), params={"format": "json"}, timeout=10).json()
    exp = exp_of(body["url"])
    assert_served(gw, body["url"], "big.bin")
    for later in (exp + 1, exp + 3600, exp * 10):
        response, request_id = fetch(gw, with_exp(body["url"], str(later)))
        assert_refused(gw, response, request_id, "bad_signature", "is not valid")


@pytest.mark.parametrize("exp", ["", "-1", "1e12", "+1", " 1", "0x10", "1" * 13, "\uff11\uff12"])
def test_a_malformed_exp_is_refused(gw: Gateway, exp: str) -> None:
    signed = build(gw, "vision", "big.bin", exp=int(time.time()) + 120)
    base, _, query = signed.partition("?")
    sig = query.split("sig=", 1)[1]
    response, request_id = fetch(gw, f"{base}?exp={quote(exp, safe='')}&sig={sig}")
    assert_refused(gw, response, request_id, "bad_signature", "is not valid")


def test_a_url_without_its_signature_is_refused(gw: Gateway) -> None:
    signed = build(gw, "vision", "big.bin", exp=int(time.time()) + 120)
    base = signed.split("?", 1)[0]
    for query in (f"exp={exp_of(signed)}", f"exp={exp_of(signed)}&sig=", "sig=" + signed.split("sig=", 1)[1]):
        response, request_id = fetch(gw, f"{base}?{query}")
        assert_refused(gw, response, request_id, "bad_signature", "is not valid")


def test_only_the_one_form_the_gateway_wrote_is_accepted(gw: Gateway) -> None:
    """The same values spelled otherwise (a leading zero, a percent-encoded signature character, a
    parameter given twice) are another URL: refused, never decoded into the one that was signed."""
    body = httpx.get(object_url(gw, "vision", "big.bin"), params={"format": "json"}, timeout=10).json()
    good = body["url"]
    assert_served(gw, good, "big.bin")
    base, _, query = good.partition("?")
    exp, sig = exp_of(good), query.split("sig=", 1)[1]
    encoded = sig.replace(sig[0], f"%{ord(sig[0]):02X}", 1)
    for spelled in (f"exp=0{exp}&sig={sig}", f"exp={exp}&sig={encoded}", f"exp={exp}&exp={exp}&sig={sig}",
                    f"exp={exp}&sig={sig}&sig={sig}", f"sig={sig}&exp={exp}&exp=1"):
        response, request_id = fetch(gw, f"{base}?{spelled}")
        assert_refused(gw, response, request_id, "bad_signature", "is not valid")
    # The parameters' order is not part of the form: the URL with sig first is the same URL.
    assert_served(gw, f"{base}?sig={sig}&exp={exp}", "big.bin")
