"""The one mapper of storage failures, and byte-exact object headers, against a real local server.

``upstream.fetch`` reads a raw-bytes server over a real socket with the production pool: every
storage status and every foreign failure (refused, silent, broken off, not HTTP), at connect time or
mid-body, becomes one typed gateway error, and no answer re-asks the storage without bound. Then the
same through a gateway on a real socket, where a client sees exactly the bytes the storage sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import httpx
import pytest

from gateway.backends import OBJECT_HEADERS, upstream
from gateway.backends.http_pool import UpstreamPool
from gateway.errors import BadGateway, GatewayError, GatewayTimeout, NotFound, RangeNotSatisfiable, Unavailable
from gateway.models import FetchRequest
from tests.delivery.leaks import assert_no_leak
from tests.delivery.upstream_server import Reply, Request, raw_storage, reply
from tests.e2e.helpers import assert_error
from tests.support import RunningGateway, free_port

GET, HEAD, RANGE = FetchRequest(), FetchRequest(head=True), FetchRequest(range="bytes=500-")
SECRET = b"<Error><Code>AccessDenied</Code><BucketName>bucket-zq7</BucketName></Error>"
TYPE = b"text/plain; charset=\xff\xfe"  # bytes that are no UTF-8
DISPOSITION = b'attachment; filename="caf\xc3\xa9.png"'  # UTF-8


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(connect_timeout=1.0, read_timeout=1.0)
    yield pool
    await pool.aclose()


async def sign(method: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-for-{method}"}


def always(answer: Reply) -> Callable[[Request], Reply]:
    return lambda _: answer


async def read(pool: UpstreamPool, url: str, request: FetchRequest = GET) -> bytes:
    fetched = await upstream.fetch(pool, url, sign, request)
    try:
        return b"".join([chunk async for chunk in fetched.body])
    finally:
        fetched.release()


# -- 416: bounded -------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_a_416_to_everything_is_one_get_one_head_then_bad_gateway(pool: UpstreamPool) -> None:
    with raw_storage(always(reply(416, body=SECRET))) as storage:
        with pytest.raises(BadGateway) as caught:
            await upstream.fetch(pool, storage.url, sign, RANGE)
    assert storage.methods == ["GET", "HEAD"]
    assert "range" not in storage.requests[1].headers  # the size is asked of the whole object
    assert "bucket-zq7" not in caught.value.detail


@pytest.mark.anyio
async def test_a_416_to_a_head_is_never_re_asked(pool: UpstreamPool) -> None:
    with raw_storage(always(reply(416, length=0))) as storage:
        with pytest.raises(BadGateway):
            await upstream.fetch(pool, storage.url, sign, HEAD)
    assert storage.methods == ["HEAD"]


@pytest.mark.anyio
async def test_a_416_to_a_get_is_answered_with_the_size_from_one_head(pool: UpstreamPool) -> None:
    def answer(request: Request) -> Reply:
        return reply(416, body=SECRET) if request.method == "GET" else reply(200, length=1234)

    with raw_storage(answer) as storage:
        with pytest.raises(RangeNotSatisfiable) as caught:
            await upstream.fetch(pool, storage.url, sign, RANGE)
    assert caught.value.size == 1234
    assert storage.methods == ["GET", "HEAD"]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "error"), [(404, NotFound), (503, Unavailable), (403, BadGateway)])
async def test_the_size_head_is_mapped_by_the_same_table(pool: UpstreamPool, status: int,
                                                         error: type[GatewayError]) -> None:
    """An object deleted between the GET and its HEAD is gone; a storage failing on the HEAD is unavailable."""
    def answer(request: Request) -> Reply:
        return reply(416) if request.method == "GET" else reply(status, length=0)

    with raw_storage(answer) as storage:
        with pytest.raises(GatewayError) as caught:
            await upstream.fetch(pool, storage.url, sign, RANGE)
    assert type(caught.value) is error
    assert storage.methods == ["GET", "HEAD"]


# -- the storage's statuses ----------------------------------------------------------------------------

@pytest.mark.anyio
@pytest.mark.parametrize("request_", [GET, HEAD], ids=["GET", "HEAD"])
@pytest.mark.parametrize(("status", "error", "retry_after"), [
    (404, NotFound, None), (412, Unavailable, 1), (429, Unavailable, 5), (500, Unavailable, 5),
    (502, Unavailable, 5), (503, Unavailable, 5), (504, Unavailable, 5), (400, BadGateway, None),
    (401, BadGateway, None), (403, BadGateway, None), (301, BadGateway, None), (418, BadGateway, None),
])
async def test_every_storage_status_becomes_one_typed_error(pool: UpstreamPool, request_: FetchRequest, status: int,
                                                            error: type[GatewayError], retry_after: int | None) -> None:
    answer = reply(status, b"Location: http://bucket-zq7.example/", b"x-amz-request-id: R1",
                   body=b"" if request_.head else SECRET, length=len(SECRET))
    with raw_storage(always(answer)) as storage:
        with pytest.raises(GatewayError) as caught:
            await upstream.fetch(pool, storage.url, sign, request_)
    assert type(caught.value) is error
    assert caught.value.retry_after == retry_after
    assert len(storage.requests) == 1
    assert "bucket-zq7" not in caught.value.detail and "127.0.0.1" not in caught.value.detail


# -- foreign failures, at connect time and mid-body: one table ------------------------------------------

@pytest.mark.anyio
async def test_a_refused_connection_is_unavailable(pool: UpstreamPool) -> None:
    url = f"http://127.0.0.1:{free_port()}/bucket-zq7/object"  # nothing listens there
    with pytest.raises(Unavailable) as caught:
        await upstream.fetch(pool, url, sign, GET)
    assert isinstance(caught.value.__cause__, aiohttp.ClientError) and caught.value.retry_after == 5
    assert "127.0.0.1" not in caught.value.detail


@pytest.mark.anyio
async def test_a_silent_storage_is_a_timeout(pool: UpstreamPool) -> None:
    with raw_storage(always(Reply(b"", "hang"))) as storage:
        with pytest.raises(GatewayTimeout) as caught:
            await upstream.fetch(pool, storage.url, sign, GET)
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.anyio
async def test_a_storage_that_stalls_mid_body_is_the_same_timeout(pool: UpstreamPool) -> None:
    with raw_storage(always(reply(200, body=b"x" * 1000, length=100_000, then="hang"))) as storage:
        fetched = await upstream.fetch(pool, storage.url, sign, GET)
        try:
            with pytest.raises(GatewayTimeout) as caught:
                async for _ in fetched.body:
                    pass
        finally:
            fetched.release()
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.anyio
async def test_a_storage_that_breaks_off_mid_body_is_unavailable(pool: UpstreamPool) -> None:
    with raw_storage(always(reply(200, body=b"x" * 100_000, length=1 << 20, then="close"))) as storage:
        with pytest.raises(Unavailable) as caught:
            await read(pool, storage.url)
    assert isinstance(caught.value.__cause__, aiohttp.ClientPayloadError)


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [
    reply(200, b"ETag: \"a\x00b\"", body=b"ok"),  # a NUL, which aiohttp's parser refuses
    reply(200, b"ETag: \"a\rb\"", body=b"ok"),  # a bare CR
    Reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "close"),  # not HTTP at all
])
async def test_an_answer_that_is_not_http_is_bad_gateway(pool: UpstreamPool, answer: Reply) -> None:
    with raw_storage(always(answer)) as storage:
        with pytest.raises(BadGateway) as caught:
            await upstream.fetch(pool, storage.url, sign, GET)
    assert isinstance(caught.value.__cause__, aiohttp.ClientResponseError)
    assert "127.0.0.1" not in caught.value.detail


def test_the_mapper_leaves_gateway_errors_and_the_unexpected_alone() -> None:
    for error in (NotFound("no such object"), KeyError("a bug of ours")):
        with pytest.raises(type(error)) as caught, upstream.storage_errors():
            raise error
        assert caught.value is error


# -- object headers: byte-exact, filtered ----------------------------------------------------------------

STORED = (b"Content-Type: " + TYPE, b"Content-Disposition: " + DISPOSITION, b"x-amz-request-id: R1",
          b"Server: AmazonS3", b"Set-Cookie: AWSALB=1", b"x-goog-hash: crc32c=AAAA", b"ETag: \"v1\"")


@pytest.mark.anyio
@pytest.mark.parametrize("request_", [GET, HEAD], ids=["GET", "HEAD"])
async def test_object_headers_are_the_storage_bytes_exactly(pool: UpstreamPool, request_: FetchRequest) -> None:
    with raw_storage(always(reply(200, *STORED, body=b"" if request_.head else b"body", length=4))) as storage:
        fetched = await upstream.fetch(pool, storage.url, sign, request_)
        fetched.release()
    assert fetched.headers["content-type"].encode("latin-1") == TYPE
    assert fetched.headers["content-disposition"].encode("latin-1") == DISPOSITION
    assert set(fetched.headers) == {"content-type", "content-disposition", "content-length", "etag"}
    assert fetched.size == 4


@pytest.mark.anyio
@pytest.mark.parametrize("control", [b"\x01", b"\x1b", b"\x7f"])
async def test_a_header_holding_a_control_character_is_dropped(pool: UpstreamPool, control: bytes) -> None:
    answer = reply(200, b"Content-Disposition: attachment; filename=\"a" + control + b".png\"",
                   b"ETag: \"v" + control + b"\"", b"ETag: \"v2\"", b"Content-Language: en,\tfr", body=b"ok")
    with raw_storage(always(answer)) as storage:
        fetched = await upstream.fetch(pool, storage.url, sign, GET)
        fetched.release()
    assert "content-disposition" not in fetched.headers
    assert "etag" not in fetched.headers  # decided by the first ETag, never a later one
    assert fetched.headers["content-language"] == "en,\tfr"  # HTAB is allowed in a field value
    assert fetched.headers["content-length"] == "2"


def test_the_object_headers_are_one_list() -> None:
    assert len(set(OBJECT_HEADERS)) == len(OBJECT_HEADERS)
    assert all(name == name.lower() for name in OBJECT_HEADERS)
    assert upstream.object_headers([(b"X-Amz-Meta-Owner", b"a"), (b"ETAG", b'"v"')]) == {"etag": '"v"'}


# -- through a gateway on a real socket ------------------------------------------------------------------

def _policy(tmp_path: Path, endpoint: str) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""version: 1
datasets:
  vision:
    delivery: proxy
    backend: {{kind: s3, bucket: bucket-zq7, endpoint_url: "{endpoint}", addressing_style: path}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
""")
    return policy


def test_a_client_gets_the_storage_header_bytes_exactly(s3_env: None, tmp_path: Path,
                                                         gateway_server: Callable[..., RunningGateway]) -> None:
    answer = reply(200, *STORED, b"Last-Modified: Mon, 01 Jan 2024\x01 00:00:00 GMT", body=b"body")
    with raw_storage(always(answer)) as storage:
        endpoint = storage.url.split("/bucket-zq7", 1)[0]
        gw = gateway_server(config=_policy(tmp_path, endpoint))
        response = httpx.get(f"{gw.url}/v1/datasets/vision/objects/object", timeout=10)
    assert response.status_code == 200 and response.content == b"body"
    raw = dict(response.headers.raw)
    assert raw[b"content-type"] == TYPE and raw[b"content-disposition"] == DISPOSITION
    assert b"last-modified" not in raw and raw[b"etag"] == b'"v1"'
    assert_no_leak(response, endpoint, extra=["bucket-zq7"])
    assert storage.methods == ["GET"] and storage.requests[0].headers["authorization"].startswith("AWS4-HMAC-SHA256")


def test_a_storage_answering_416_to_everything_is_a_502(s3_env: None, tmp_path: Path,
                                                         gateway_server: Callable[..., RunningGateway]) -> None:
    with raw_storage(always(reply(416, body=SECRET))) as storage:
        endpoint = storage.url.split("/bucket-zq7", 1)[0]
        gw = gateway_server(config=_policy(tmp_path, endpoint))
        response = httpx.get(f"{gw.url}/v1/datasets/vision/objects/object", headers={"Range": "bytes=10-"}, timeout=10)
    assert_error(response, 502, "upstream_refused")
    assert_no_leak(response, endpoint, extra=["bucket-zq7"])
    assert storage.methods == ["GET", "HEAD"]
