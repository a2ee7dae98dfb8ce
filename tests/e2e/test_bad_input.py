"""Hostile and malformed input through a real socket. Request targets are written verbatim on the
request line (see helpers.raw_request), so no client normalizes ``..`` or percent-encoding away."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.conftest import A_BIN, make_data_dir
from tests.e2e.helpers import FakeClock, RawResponse, assert_error, local_policy, raw_request
from tests.support import RunningGateway

OBJ = b"/v1/datasets/local/objects/"

TRAVERSAL = [
    b"../outside.txt",
    b"%2e%2e/outside.txt",
    b"%2E%2E/outside.txt",
    b".%2e/outside.txt",
    b"%2e./outside.txt",
    b"%252e%252e/outside.txt",
    b"%25252e%25252E/outside.txt",
    b"..%2foutside.txt",
    b"..%2Foutside.txt",
    b"%2e%2e%2foutside.txt",
    b"%2e%2e%5coutside.txt",
    b"..\\outside.txt",
    b"nested\\..\\..\\outside.txt",
    b"nested/../../outside.txt",
    b"nested/%2e%2e/%2e%2e/outside.txt",
    b"./a.bin",
    b"%2e/a.bin",
    b"a.bin/..",
    b"a.bin/.",
    b"..",
    b"%2e%2e",
]
MALFORMED_KEYS = [
    b"a%00b",
    b"a%0db",
    b"a%0ab",
    b"a%0d%0aSet-Cookie:%20x=1",
    b"a%09b",
    b"a%7fb",
    b"a%c2%85b",  # U+0085 NEL, a C1 control
    b"a%e2%80%a8b",  # U+2028 line separator
    b"%ff",
    b"a%c3%28",
    b"%ed%a0%80",  # a UTF-16 surrogate encoded as UTF-8
    b"%c0%ae%c0%ae/outside.txt",  # overlong UTF-8 dots
    b"",
    b"/a.bin",
    b"nested//a.bin",
    b"a.bin/",
    b"a" * 1025,
    b"%C3%BC" * 513,  # 1026 bytes once decoded
    b"%5c",
]


def _get(gw: RunningGateway, target: bytes, **kwargs: object) -> RawResponse:
    return raw_request(gw.port, target, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", TRAVERSAL, ids=lambda k: k.decode("latin-1"))
def test_traversal_on_object_route_is_400(shared_gateway: RunningGateway, key: bytes) -> None:
    response = _get(shared_gateway, OBJ + key)
    assert response.sent.split(b" ")[1] == OBJ + key  # the bytes on the wire are the intended ones
    assert_error(response, 400, "invalid_key")
    assert response.header("location") is None


@pytest.mark.parametrize("key", MALFORMED_KEYS, ids=lambda k: k.decode("latin-1")[:40])
def test_malformed_key_on_object_route_is_400(shared_gateway: RunningGateway, key: bytes) -> None:
    response = _get(shared_gateway, OBJ + key)
    assert_error(response, 400, "invalid_key")
    assert response.header("set-cookie") is None


def test_longest_key_is_accepted(shared_gateway: RunningGateway) -> None:
    assert _get(shared_gateway, OBJ + b"a" * 1024).status == 302  # the boundary the 1025 case fails at
    assert _get(shared_gateway, OBJ + b"%C3%BC" * 512).status == 302


@pytest.mark.parametrize("key", TRAVERSAL[:14] + MALFORMED_KEYS[:12], ids=lambda k: k.decode("latin-1")[:40])
def test_a_bad_key_on_the_local_route_is_the_one_url_refusal(shared_gateway: RunningGateway, key: bytes) -> None:
    """A local-disk URL is its own credential: a bad key in it is one more way for the URL not to be
    valid, answered like a bad signature (the key is not looked at before the URL proves itself)."""
    bad_key = assert_error(_get(shared_gateway, b"/v1/local/local/" + key + b"?exp=9999999999&sig=abc"), 403,
                           "forbidden")
    bad_sig = assert_error(_get(shared_gateway, b"/v1/local/local/a.bin?exp=9999999999&sig=abc"), 403, "forbidden")
    assert bad_key["detail"] == bad_sig["detail"]


def test_no_traversal_even_with_a_valid_signature(shared_gateway: RunningGateway) -> None:
    """Signing never looks an object up, but the file route must not follow a symlink out of the folder."""
    with httpx.Client(base_url=shared_gateway.url, timeout=10) as client:
        location = client.get("/v1/datasets/local/objects/link.txt").headers["location"]
        response = client.get(location)
        assert_error(response, 404, "not_found")
        assert b"TOP SECRET" not in response.content
        # A directory is not listed either.
        location = client.get("/v1/datasets/local/objects/nested").headers["location"]
        assert_error(client.get(location), 404, "not_found")


def test_unicode_key_round_trip(shared_gateway: RunningGateway) -> None:
    response = _get(shared_gateway, OBJ + b"nested/%C3%BC%20%C3%B1.bin")
    assert response.status == 302
    location = response.header("location") or ""
    with httpx.Client(timeout=10) as client:
        fetched = client.get(location)
    assert fetched.status_code == 200 and fetched.content == b"unicode key"


@pytest.mark.parametrize(
    ("target", "code"),
    [
        (b"/v1/datasets/" + b"x" * 200 + b"/objects/a.bin", "not_found"),
        (b"/v1/datasets/../objects/a.bin", "not_found"),
        (b"/v1/datasets/%2e%2e/objects/a.bin", "not_found"),
        (b"/v1/datasets/lo%2fcal/objects/a.bin", "not_found"),
        (b"/v1/datasets/-local/objects/a.bin", "not_found"),
        (b"/v1/datasets/local%00/objects/a.bin", "not_found"),
        (b"/v1/datasets/local%20/objects/a.bin", "not_found"),
        (b"/v1/datasets/%ff/objects/a.bin", "not_found"),
        (b"/v1/datasets//objects/a.bin", "not_found"),
        (b"/v1/datasets/local", "not_found"),
        (b"/v1/datasets/local/objectsX/a.bin", "not_found"),
        (b"/v1/local/..%2f/a.bin?exp=1&sig=x", "not_found"),
        (b"/nope", "not_found"),
        (b"/v1", "not_found"),
        (b"/v2/datasets/local/objects/a.bin", "not_found"),
    ],
    ids=lambda t: t.decode("latin-1")[:50] if isinstance(t, bytes) else t,
)
def test_unknown_dataset_or_route_is_404(shared_gateway: RunningGateway, target: bytes, code: str) -> None:
    body = assert_error(_get(shared_gateway, target), 404, code)
    assert "x" * 100 not in body["detail"]  # a long name is not echoed back whole


@pytest.mark.parametrize("target", [b"/v1/datasets/nope/objects/a.bin", b"/v1/datasets/LOCAL/objects/a.bin",
                                    b"/v1/datasets/" + b"x" * 60 + b"/objects/a.bin",
                                    b"/v1/datasets/nope/objects/%2e%2e/x", b"/v1/datasets/local/objects/%2e%2e/x",
                                    b"/v1/datasets/local/objects/a%00b"])
def test_strangers_cannot_tell_an_unknown_dataset_from_a_refused_one(
    gateway_server, tmp_path: Path, target: bytes  # type: ignore[no-untyped-def]
) -> None:
    """Without a credential, an unknown dataset is answered exactly like one the caller may not
    read (here: a dataset open only to 10.0.0.0/8): strangers cannot list datasets by name."""
    data = make_data_dir(tmp_path)
    gw: RunningGateway = gateway_server(config=local_policy(tmp_path / "p.yaml", data, networks=["10.0.0.0/8"]))
    unknown = assert_error(_get(gw, target), 401, "unauthenticated")
    refused = assert_error(_get(gw, b"/v1/datasets/local/objects/a.bin"), 401, "unauthenticated")
    assert unknown["detail"] == refused["detail"]


# -- local-URL signatures -------------------------------------------------------------------

def _signed(gw: RunningGateway, key: str = "a.bin") -> tuple[str, str, str]:
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        location = client.get(f"/v1/datasets/local/objects/{key}").headers["location"]
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    return parts.path, query["exp"][0], query["sig"][0]


def _flip(text: str) -> str:
    return ("A" if text[0] != "A" else "B") + text[1:]


def test_signature_cases(shared_gateway: RunningGateway) -> None:
    path, exp, sig = _signed(shared_gateway)
    _, other_exp, other_sig = _signed(shared_gateway, "hello.txt")
    p = path.encode()
    ok = _get(shared_gateway, p + f"?exp={exp}&sig={sig}".encode())
    assert ok.status == 200 and ok.body == A_BIN
    forbidden = [
        p + f"?exp={exp}&sig={_flip(sig)}".encode(),  # tampered signature
        p + f"?exp={exp}&sig={sig[:-1]}".encode(),  # truncated
        p + f"?exp={int(exp) + 3600}&sig={sig}".encode(),  # extended expiry
        p + f"?exp={exp}&sig={other_sig}".encode(),  # another key's signature
        b"/v1/local/local/hello.txt" + f"?exp={exp}&sig={sig}".encode(),  # signature moved to another key
        p + f"?exp={exp}".encode(),  # no signature
        p + f"?sig={sig}".encode(),  # no expiry
        p,  # neither
        p + f"?exp={exp}&sig=".encode(),
        p + f"?exp=-1&sig={sig}".encode(),
        p + f"?exp=1e10&sig={sig}".encode(),
        p + f"?exp={exp}x&sig={sig}".encode(),
        p + f"?exp={'9' * 40}&sig={sig}".encode(),
        p + f"?exp={exp}&sig={sig}%00".encode(),
        p + f"?exp={exp}&sig=%ff%fe".encode(),
    ]
    # Only the one form the gateway wrote: the same values spelled otherwise are refused, not decoded.
    encoded = sig.replace(sig[0], f"%{ord(sig[0]):02X}", 1)
    forbidden += [
        p + f"?exp=0{exp}&sig={sig}".encode(),  # a leading zero
        p + f"?exp={exp}&sig={encoded}".encode(),  # a percent-encoded signature character
        p + f"?exp={exp}&exp={exp}&sig={sig}".encode(),  # given twice
        p + f"?exp={exp}&sig={sig}&sig={sig}".encode(),
        b"/v1/local/nope/a.bin" + f"?exp={exp}&sig={sig}".encode(),  # an unknown dataset
    ]
    details = set()
    for target in forbidden:
        body = assert_error(_get(shared_gateway, target), 403, "forbidden")
        assert sig not in body["detail"]
        details.add(body["detail"])
    assert len(details) == 1  # every way a URL fails to prove itself is one answer
    assert other_exp  # both URLs came from the gateway


def test_expired_signature_is_403(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    gw: RunningGateway = gateway_server(clock=clock, local_dir=make_data_dir(tmp_path))
    path, exp, sig = _signed(gw)
    target = path.encode() + f"?exp={exp}&sig={sig}".encode()
    assert _get(gw, target).status == 200
    clock.now = int(exp) + 0.5
    body = assert_error(_get(gw, target), 403, "forbidden")
    assert "expired" in body["detail"]
    # An expired URL must not be cached into a fresh one either: a new redirect gives a later exp.
    _, new_exp, _ = _signed(gw)
    assert int(new_exp) > clock.now


# -- Range, conditional requests, HEAD ---------------------------------------------------------

@pytest.fixture(scope="module")
def urls(shared_gateway: RunningGateway) -> dict[str, str]:
    with httpx.Client(base_url=shared_gateway.url, timeout=10) as client:
        return {key: client.get(f"/v1/datasets/local/objects/{key}").headers["location"]
                for key in ("a.bin", "empty.bin", "hello.txt", "tiny.png", "cloud.pcd")}


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, 1023),
        ("bytes=1000-5000", 1000, 1023),
        ("bytes=1023-1023", 1023, 1023),
        ("bytes=-1", 1023, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=-5000", 0, 1023),
    ],
)
def test_range_206(urls: dict[str, str], range_header: str, start: int, end: int) -> None:
    response = httpx.get(urls["a.bin"], headers={"Range": range_header}, timeout=10)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/1024"
    assert response.content == A_BIN[start:end + 1]
    assert response.headers["content-length"] == str(end - start + 1)


@pytest.mark.parametrize(("key", "range_header"), [("a.bin", "bytes=1024-"), ("a.bin", "bytes=4096-"),
                                                   ("a.bin", "bytes=1024-1030"), ("a.bin", "bytes=5000-6000"),
                                                   ("a.bin", "bytes=-0"),
                                                   ("empty.bin", "bytes=0-")])
def test_range_416(urls: dict[str, str], key: str, range_header: str) -> None:
    response = httpx.get(urls[key], headers={"Range": range_header}, timeout=10)
    assert_error(response, 416, "range_not_satisfiable")
    size = 1024 if key == "a.bin" else 0
    assert response.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("range_header", ["bytes=0-1,5-6", "bytes=5-2", "items=0-1", "bytes=abc", "bytes=-",
                                          "bytes= 0-1x"])
def test_multi_or_malformed_range_is_ignored(urls: dict[str, str], range_header: str) -> None:
    response = httpx.get(urls["a.bin"], headers={"Range": range_header}, timeout=10)
    assert response.status_code == 200
    assert response.content == A_BIN
    assert "content-range" not in response.headers


def test_if_range(urls: dict[str, str]) -> None:
    first = httpx.get(urls["a.bin"], timeout=10)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert first.headers["accept-ranges"] == "bytes"
    for validator in (etag, modified):
        hit = httpx.get(urls["a.bin"], headers={"Range": "bytes=0-3", "If-Range": validator}, timeout=10)
        assert hit.status_code == 206 and hit.content == A_BIN[:4]
    for stale in ('"0-0-0"', "Thu, 01 Jan 1970 00:00:00 GMT"):
        miss = httpx.get(urls["a.bin"], headers={"Range": "bytes=0-3", "If-Range": stale}, timeout=10)
        assert miss.status_code == 200 and miss.content == A_BIN


def test_conditional_requests(urls: dict[str, str]) -> None:
    first = httpx.get(urls["a.bin"], timeout=10)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"x", W/{etag}'}, {"If-None-Match": "*"},
                    {"If-Modified-Since": modified}, {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}):
        response = httpx.get(urls["a.bin"], headers=headers, timeout=10)
        assert response.status_code == 304, headers
        assert response.content == b""
        assert response.headers["etag"] == etag
    for headers in ({"If-None-Match": '"other"'}, {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
                    {"If-Modified-Since": "garbage"}):
        response = httpx.get(urls["a.bin"], headers=headers, timeout=10)
        assert response.status_code == 200 and response.content == A_BIN, headers


def test_local_file_headers(urls: dict[str, str]) -> None:
    types = (("tiny.png", "image/png"), ("cloud.pcd", "application/x-pcd"), ("a.bin", "application/octet-stream"))
    for key, ctype in types:
        response = httpx.get(urls[key], timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == ctype
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"].startswith("private, max-age=")
    empty = httpx.get(urls["empty.bin"], timeout=10)
    assert empty.status_code == 200 and empty.content == b"" and empty.headers["content-length"] == "0"


def test_head_on_local_file(shared_gateway: RunningGateway, urls: dict[str, str]) -> None:
    parts = urlsplit(urls["a.bin"])
    target = f"{parts.path}?{parts.query}".encode()
    response = _get(shared_gateway, target, method=b"HEAD")
    assert response.status == 200
    assert response.body == b""
    assert response.header("content-length") == "1024"
    assert response.header("etag") and response.header("last-modified")
    ranged = _get(shared_gateway, target, method=b"HEAD", headers=[(b"Range", b"bytes=0-9")])
    assert ranged.status == 206 and ranged.body == b"" and ranged.header("content-range") == "bytes 0-9/1024"


# -- batch signing ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{", 400, "bad_request"),
        (b"", 400, "bad_request"),
        (b"\xff\xfe", 400, "bad_request"),
        (b'{"dataset": "local", "keys": ["a.bin"]', 400, "bad_request"),
        (b"[]", 400, "bad_request"),
        (b'"local"', 400, "bad_request"),
        (b"null", 400, "bad_request"),
        (b'{"dataset": "local", "keys": "a.bin"}', 400, "bad_request"),
        (b'{"dataset": "local", "keys": {"a": 1}}', 400, "bad_request"),
        (b'{"dataset": "local"}', 400, "bad_request"),
        (b'{"keys": ["a.bin"]}', 400, "bad_request"),
        (b'{"dataset": 1, "keys": ["a.bin"]}', 400, "bad_request"),
        (b'{"dataset": "local", "keys": ["a.bin"], "redirect": "https://evil.example"}', 400, "bad_request"),
        (b'{"dataset": "nope", "keys": ["a.bin"]}', 401, "unauthenticated"),  # as for a refused dataset
        (json.dumps({"dataset": "local", "keys": ["k"] * 1001}).encode(), 413, "batch_too_large"),
    ],
    ids=lambda v: v[:40].decode("latin-1") if isinstance(v, bytes) else str(v),
)
def test_batch_bad_bodies(shared_gateway: RunningGateway, body: bytes, status: int, code: str) -> None:
    response = _get(shared_gateway, b"/v1/sign", method=b"POST", body=body,
                    headers=[(b"Content-Type", b"application/json")])
    assert_error(response, status, code)


def test_batch_body_over_the_byte_limit_is_413(shared_gateway: RunningGateway) -> None:
    # Only the headers are sent: the declared length alone must be refused, before any body is read.
    response = _get(shared_gateway, b"/v1/sign", method=b"POST", content_length=2_000_000_000,
                    headers=[(b"Content-Type", b"application/json")])
    assert_error(response, 413)


def test_batch_limit_from_policy(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_data_dir(tmp_path)
    gw: RunningGateway = gateway_server(config=local_policy(tmp_path / "p.yaml", data, batch_limit=3))
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        assert client.post("/v1/sign", json={"dataset": "local", "keys": ["a", "b", "c"]}).status_code == 200
        assert_error(client.post("/v1/sign", json={"dataset": "local", "keys": ["a", "b", "c", "d"]}),
                     413, "batch_too_large")


# -- methods and routes -----------------------------------------------------------------------

@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"PATCH"])
@pytest.mark.parametrize("target", [OBJ + b"a.bin", b"/v1/local/local/a.bin?exp=1&sig=x"])
def test_wrong_method_on_object_routes_is_405(shared_gateway: RunningGateway, method: bytes, target: bytes) -> None:
    response = _get(shared_gateway, target, method=method)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in (response.header("allow") or "")


@pytest.mark.parametrize(("method", "target"), [(b"GET", b"/v1/sign"), (b"POST", b"/healthz"),
                                                (b"DELETE", b"/metrics"), (b"PUT", b"/readyz")])
def test_wrong_method_on_service_routes_is_405(shared_gateway: RunningGateway, method: bytes, target: bytes) -> None:
    assert_error(_get(shared_gateway, target, method=method), 405, "method_not_allowed")


# -- request ids ----------------------------------------------------------------------------

@pytest.mark.parametrize("rid", [b"abc-123", b"req.1:2_3", b"A" * 128, b"0"])
def test_well_formed_request_id_is_echoed(shared_gateway: RunningGateway, rid: bytes) -> None:
    for target in (OBJ + b"a.bin", OBJ + b"%2e%2e", b"/healthz", b"/nope"):
        response = _get(shared_gateway, target, headers=[(b"X-Request-ID", rid)])
        assert response.header("x-request-id") == rid.decode()
        if response.status >= 400:
            assert response.json()["request_id"] == rid.decode()


@pytest.mark.parametrize("rid", [b"has space", b"A" * 129, b"B" * 200, b"abc%0d%0aSet-Cookie:%20x", b"a;b",
                                 b"<script>", b"\xc3\xa9t\xc3\xa9", b"a/b", b'"quoted"'])
def test_malformed_request_id_is_replaced(shared_gateway: RunningGateway, rid: bytes) -> None:
    response = _get(shared_gateway, OBJ + b"%2e%2e", headers=[(b"X-Request-ID", rid)])
    body = assert_error(response, 400)
    assert body["request_id"] != rid.decode("latin-1")
    assert 1 <= len(body["request_id"]) <= 128
    assert response.header("set-cookie") is None
    assert len(response.all("x-request-id")) == 1
