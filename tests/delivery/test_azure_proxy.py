"""``delivery: proxy`` on Azure: the ObjectSource reads blobs from Azurite (which checks every SharedKey
signature, and Entra bearer tokens over HTTPS) through the gateway's upstream pool: exact bytes for hostile
keys, ranges, conditionals, HEAD, typed errors, and nothing of the storage in what it hands on."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.backends.azure import AzureBackend
from gateway.backends.azure_source import AzureSource
from gateway.backends.http_pool import UpstreamPool
from gateway.config.backends import AzureBackend as AzureConfig
from gateway.errors import BadGateway, NotFound, RangeNotSatisfiable, Unavailable
from gateway.models import Fetched, FetchRequest
from tests.azurite.entra import TokenEndpoint
from tests.azurite.harness import ACCOUNT, ACCOUNT_KEY, Azurite, make_tls, running_azurite
from tests.support import free_port

CONTAINER = "vault-zq7"  # a name that appears nowhere else, so a scan for it finds only leaks
PREFIX = "sealed/"
BIG = os.urandom(300_000)
OBJECTS: dict[str, bytes] = {
    "images/frame 0001.jpg": b"\xff\xd8\xff\xe0 jpeg bytes",
    "images/caf\u00e9/\u65e5\u672c\u8a9e \u00fc.png": "unicode \u00e9".encode(),
    "images/a+b~c.bin": bytes(range(256)),
    "images/100%/x=1&y=2?.txt": b"percent and query characters",
    "q/!*'();:@$,[]#.txt": b"reserved characters",
    "big.bin": BIG,
    "empty.bin": b"",
}


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with running_azurite() as server:
        container = server.service().create_container(CONTAINER)
        for key, body in OBJECTS.items():
            container.upload_blob(PREFIX + key, body, content_settings=None)
        yield server


def source(endpoint: str, key: str = ACCOUNT_KEY) -> AzureSource:
    config = AzureConfig.model_validate({"kind": "azure", "account": ACCOUNT, "container": CONTAINER, "prefix": PREFIX,
                                         "endpoint": endpoint, "credential": "account_key", "account_key_env": "K"})
    return AzureSource(AzureBackend(config, environ={"K": key}), UpstreamPool())


WHOLE = FetchRequest()


def read(target: AzureSource, key: str, request: FetchRequest = WHOLE) -> tuple[Fetched, bytes]:
    async def go() -> tuple[Fetched, bytes]:
        try:
            fetched = await target.fetch(key, request)
            try:
                body = b"".join([chunk async for chunk in fetched.body])
            finally:
                fetched.release()
            return fetched, body
        finally:
            await target.pool.aclose()

    return asyncio.run(go())


def assert_nothing_of_the_storage(fetched: Fetched, endpoint: str) -> None:
    marks = [endpoint.split("//")[1].split("/")[0], ACCOUNT, CONTAINER, PREFIX.rstrip("/"), "x-ms", "sig=", "azurite",
             "blob.core"]
    text = "\n".join(f"{name}: {value}" for name, value in fetched.headers.items()).lower()
    for mark in marks:
        assert mark.lower() not in text, (mark, text)
    assert set(fetched.headers) <= {"content-type", "content-length", "content-range", "etag", "last-modified",
                                    "content-encoding", "content-language", "content-disposition"}


@pytest.mark.parametrize("key", sorted(OBJECTS))
def test_every_blob_arrives_byte_for_byte(azurite: Azurite, key: str) -> None:
    fetched, body = read(source(azurite.endpoint), key)
    assert (fetched.status, body, fetched.size) == (200, OBJECTS[key], len(OBJECTS[key]))
    assert fetched.headers["etag"].startswith('"') and fetched.headers["last-modified"].endswith("GMT")
    assert_nothing_of_the_storage(fetched, azurite.endpoint)


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-", 0, len(BIG) - 1),
    ("bytes=0-99", 0, 99),
    ("bytes=1000-1999", 1000, 1999),
    ("bytes=299990-400000", 299990, len(BIG) - 1),  # clipped at the end
])
def test_ranges_are_signed_and_served(azurite: Azurite, header: str, first: int, last: int) -> None:
    fetched, body = read(source(azurite.endpoint), "big.bin", FetchRequest(range=header))
    assert fetched.status == 206
    assert fetched.headers["content-range"] == f"bytes {first}-{last}/{len(BIG)}"
    assert body == BIG[first:last + 1] and fetched.size == len(BIG)


@pytest.mark.parametrize("header", ["bytes=300001-", "bytes=999999-1000000"])
def test_an_unsatisfiable_range_is_416_with_the_size(azurite: Azurite, header: str) -> None:
    # upstream.fetch then asks for the size with a HEAD of its own: signed without the range it does not send.
    # (Not bytes=300000-: Azurite 3.35 answers a range starting at the size with an empty 206; Azure with 416.)
    with pytest.raises(RangeNotSatisfiable) as caught:
        read(source(azurite.endpoint), "big.bin", FetchRequest(range=header))
    assert caught.value.size == len(BIG)


def test_head_and_conditionals(azurite: Azurite) -> None:
    target = source(azurite.endpoint)
    head, body = read(target, "images/a+b~c.bin", FetchRequest(head=True))
    assert (head.status, body, head.size, head.headers["content-length"]) == (200, b"", 256, "256")
    etag, modified = head.headers["etag"], head.headers["last-modified"]
    assert read(target, "images/a+b~c.bin", FetchRequest(if_none_match=etag))[0].status == 304
    assert read(target, "images/a+b~c.bin", FetchRequest(if_modified_since=modified))[0].status == 304
    assert read(target, "images/a+b~c.bin", FetchRequest(head=True, if_none_match=etag))[0].status == 304
    changed, body = read(target, "images/a+b~c.bin", FetchRequest(if_none_match='"0xOTHER"'))
    assert (changed.status, body) == (200, OBJECTS["images/a+b~c.bin"])
    assert read(target, "images/a+b~c.bin", FetchRequest(if_modified_since="Mon, 01 Jan 2001 00:00:00 GMT"))[0] \
        .status == 200


def test_storage_failures_become_typed_errors(azurite: Azurite) -> None:
    with pytest.raises(NotFound):
        read(source(azurite.endpoint), "images/missing.png")
    with pytest.raises(BadGateway):  # a SharedKey signature the storage refuses: no client can fix that
        read(source(azurite.endpoint, key=base64.b64encode(b"w" * 64).decode()), "images/a+b~c.bin")
    with pytest.raises(Unavailable):
        read(source(f"http://127.0.0.1:{free_port()}/{ACCOUNT}"), "images/a+b~c.bin")


class TrustingPool(UpstreamPool):
    """The gateway's pool that also trusts the test CA (in production, the system's CAs are enough)."""

    def __init__(self, cafile: str) -> None:
        super().__init__()
        self.context = ssl.create_default_context(cafile=cafile)
        self._own: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._own is None or self._own.closed:
            self._own = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context), timeout=self.timeout,
                                              auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        return self._own

    async def aclose(self) -> None:
        if self._own is not None:
            await self._own.close()


def test_reads_with_an_entra_token(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workload and managed identities read with ``Authorization: Bearer`` (Azurite takes it over HTTPS only)."""
    tls = make_tls(tmp_path_factory.mktemp("tls"))
    entra = TokenEndpoint()
    for name, value in entra.environ().items():
        monkeypatch.setenv(name, value)
    try:
        with running_azurite(tls=tls) as secure:
            secure.service().create_container(CONTAINER).upload_blob(PREFIX + "big.bin", BIG)
            config = AzureConfig.model_validate({"kind": "azure", "account": ACCOUNT, "container": CONTAINER,
                                                 "prefix": PREFIX, "endpoint": secure.endpoint,
                                                 "credential": "managed_identity"})
            target = AzureSource(AzureBackend(config), TrustingPool(str(tls.cert)))
            fetched, body = read(target, "big.bin", FetchRequest(range="bytes=10-19"))
            assert (fetched.status, body) == (206, BIG[10:20])
            assert_nothing_of_the_storage(fetched, secure.endpoint)
            again, _ = read(target, "big.bin", FetchRequest(if_none_match=fetched.headers["etag"]))
            assert again.status == 304
            assert entra.grants == 1  # one token for both reads, reused until near its expiry
            entra.mode = "foreign"  # a token from an issuer the storage does not trust: refused, no client can fix it
            with pytest.raises(BadGateway):
                read(AzureSource(AzureBackend(config), TrustingPool(str(tls.cert))), "big.bin")
            entra.mode = "fail"  # no token at all
            with pytest.raises(Unavailable):
                read(AzureSource(AzureBackend(config), TrustingPool(str(tls.cert))), "big.bin")
    finally:
        entra.close()
