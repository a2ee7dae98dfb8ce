"""``delivery: proxy`` on S3, against s3rver (which checks the gateway's SigV4 header signatures):
exact bytes for hostile keys, ranges, conditionals, HEAD, upstream failures, and no storage detail
in any answer."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

import httpx
import pytest

from tests.delivery.conftest import BIG, OBJECTS, ProxySetup
from tests.delivery.leaks import assert_no_leak
from tests.e2e.helpers import assert_error


def url(setup: ProxySetup, key: str, dataset: str = "vision") -> str:
    return f"{setup.gateway.url}/v1/datasets/{dataset}/objects/{quote(key)}"


def get(setup: ProxySetup, key: str, dataset: str = "vision", **kwargs: object) -> httpx.Response:
    response = httpx.get(url(setup, key, dataset), timeout=10, **kwargs)  # type: ignore[arg-type]
    assert_no_leak(response, setup.endpoint)
    return response


@pytest.mark.parametrize("key", sorted(OBJECTS))
def test_every_object_arrives_byte_for_byte(proxy: ProxySetup, key: str) -> None:
    response = get(proxy, key)
    assert response.status_code == 200, response.text
    assert response.content == OBJECTS[key]
    assert response.headers["content-length"] == str(len(OBJECTS[key]))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"private, max-age=\d+", response.headers["cache-control"])
    assert response.headers["etag"].startswith('"') and response.headers["last-modified"].endswith("GMT")
    assert "location" not in response.headers


def test_content_type_comes_from_the_store_and_overrides_win(proxy: ProxySetup) -> None:
    assert get(proxy, "tiny.png").headers["content-type"] == "image/png"
    typed = get(proxy, "tiny.png", dataset="typed")
    assert typed.headers["content-type"] == "application/x-test"
    assert typed.headers["content-disposition"] == "attachment"


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-", 0, len(BIG) - 1),  # the whole object, but asked as a range: 206, never 200
    ("bytes=0-99", 0, 99),
    ("bytes=1000-1999", 1000, 1999),
    ("bytes=299990-400000", 299990, len(BIG) - 1),  # clipped at the end
    ("bytes=-10", len(BIG) - 10, len(BIG) - 1),  # a suffix: the LAST ten bytes (RFC 9110)
    ("bytes=-500000", 0, len(BIG) - 1),  # a suffix longer than the object: all of it
])
def test_ranges(proxy: ProxySetup, header: str, first: int, last: int) -> None:
    response = get(proxy, "big.bin", headers={"Range": header})
    assert response.status_code == 206, response.text
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(BIG)}"
    assert response.content == BIG[first:last + 1]
    assert response.headers["content-length"] == str(last - first + 1)


@pytest.mark.parametrize("header", ["bytes=300000-", "bytes=999999-1000000", "bytes=-0"])
def test_unsatisfiable_ranges_are_416_with_the_size(proxy: ProxySetup, header: str) -> None:
    response = get(proxy, "big.bin", headers={"Range": header})
    assert_error(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{len(BIG)}"


@pytest.mark.parametrize("header", ["bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=abc"])
def test_unusable_ranges_are_ignored(proxy: ProxySetup, header: str) -> None:
    response = get(proxy, "big.bin", headers={"Range": header})
    assert response.status_code == 200 and response.content == BIG


def test_conditionals(proxy: ProxySetup) -> None:
    first = get(proxy, "big.bin")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    again = get(proxy, "big.bin", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers.get("etag", etag) == etag  # S3 repeats it; s3rver 4.0.4 sends none on a 304
    assert get(proxy, "big.bin", headers={"If-None-Match": '"other"'}).status_code == 200
    assert get(proxy, "big.bin", headers={"If-Modified-Since": modified}).status_code == 304
    # If-Range: the range only while the validator still matches, else the whole object.
    ranged = get(proxy, "big.bin", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert ranged.status_code == 206 and ranged.content == BIG[:10]
    whole = get(proxy, "big.bin", headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert whole.status_code == 200 and whole.content == BIG


def test_head_has_the_headers_and_no_body(proxy: ProxySetup) -> None:
    response = httpx.head(url(proxy, "big.bin"), timeout=10)
    assert_no_leak(response, proxy.endpoint)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(len(BIG))
    ranged = httpx.head(url(proxy, "big.bin"), headers={"Range": "bytes=-10"}, timeout=10)
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes {len(BIG) - 10}-{len(BIG) - 1}/{len(BIG)}"


def test_missing_object_is_404_after_authorization(proxy: ProxySetup) -> None:
    assert_error(get(proxy, "missing/nothing.bin"), 404, "not_found")
    # Refused callers never learn whether an object exists: the same refusal for both (401: these
    # callers carry no credential).
    present = get(proxy, "big.bin", dataset="elsewhere")
    absent = get(proxy, "missing/nothing.bin", dataset="elsewhere")
    assert_error(present, 401)
    assert_error(absent, 401)
    assert present.json()["detail"] == absent.json()["detail"]
    assert_error(get(proxy, "secrets/key.bin"), 403)  # outside allow_keys


def test_client_credentials_and_cookies_are_not_forwarded(proxy: ProxySetup) -> None:
    # s3rver refuses a request with two authentication mechanisms; an Authorization header that
    # reached it would replace the gateway's own and fail its signature check.
    response = get(proxy, "big.bin", headers={"Cookie": "session=abc", "X-Amz-Security-Token": "client-token",
                                              "X-Amz-Date": "20000101T000000Z"})
    assert response.status_code == 200 and response.content == BIG
    bearer = get(proxy, "big.bin", headers={"Authorization": "Bearer x.y.z"})
    assert_error(bearer, 401)  # a credential the gateway checks itself, and refuses; never passed on


def test_cors_for_allowed_origins_exposes_the_range_headers(proxy: ProxySetup) -> None:
    response = get(proxy, "big.bin", headers={"Origin": proxy.origin, "Range": "bytes=0-3"})
    assert response.headers["access-control-allow-origin"] == proxy.origin
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "content-length", "accept-ranges", "etag"} <= exposed
    other = get(proxy, "big.bin", headers={"Origin": "http://evil.example.test"})
    assert "access-control-allow-origin" not in other.headers


def test_json_and_batch_answers_hold_gateway_urls_bound_to_the_client(proxy: ProxySetup) -> None:
    answer = get(proxy, "big.bin", params={"format": "json"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["url"].startswith(f"{proxy.gateway.url}/v1/datasets/vision/objects/big.bin?exp=")
    fetched = get(proxy, body["url"].split("/v1/datasets/vision/objects/")[1].split("?")[0],
                  params=dict(p.split("=", 1) for p in body["url"].split("?", 1)[1].split("&")))
    assert fetched.status_code == 200 and fetched.content == BIG
    batch = httpx.post(f"{proxy.gateway.url}/v1/sign", json={"dataset": "vision", "keys": sorted(OBJECTS)},
                       timeout=10)
    assert_no_leak(batch, proxy.endpoint)
    results = batch.json()["results"]
    assert [r["key"] for r in results] == sorted(OBJECTS)
    for result in results:
        assert result["url"].startswith(proxy.gateway.url + "/v1/datasets/vision/objects/")
        assert httpx.get(result["url"], timeout=10).content == OBJECTS[result["key"]]


def test_a_gateway_url_is_refused_from_another_address(proxy: ProxySetup) -> None:
    body = get(proxy, "big.bin", params={"format": "json"}).json()
    # The same URL from 127.0.0.2: another client address, as the gateway sees it.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as other:
        refused = other.get(body["url"])
    assert_error(refused, 403)
    tampered = body["url"].replace("exp=", "exp=9")
    assert_error(get(proxy, "big.bin", params={"exp": tampered.split("exp=")[1].split("&")[0],
                                               "sig": tampered.split("sig=")[1]}), 403)


def test_audit_records_status_and_bytes(proxy: ProxySetup) -> None:
    get(proxy, "big.bin", headers={"Range": "bytes=0-99", "X-Request-ID": "audit-range-1"})
    get(proxy, "big.bin", headers={"X-Request-ID": "audit-whole-1"})
    get(proxy, "missing/nothing.bin", headers={"X-Request-ID": "audit-missing-1"})
    deadline = time.monotonic() + 5
    records: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline and len(records) < 3:
        time.sleep(0.1)
        for line in proxy.audit.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if str(record["request_id"]).startswith("audit-"):
                records[str(record["request_id"])] = record
    assert records["audit-range-1"]["status"] == 206 and records["audit-range-1"]["bytes"] == 100
    assert records["audit-whole-1"]["status"] == 200 and records["audit-whole-1"]["bytes"] == len(BIG)
    assert records["audit-missing-1"]["status"] == 404 and records["audit-missing-1"]["action"] == "proxy"
