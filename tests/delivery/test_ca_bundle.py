"""``ca_bundle`` on an S3 backend: an S3-compatible store whose certificate a company CA signed
(s3rver over HTTPS, a test CA). Listing and proxy reads trust exactly that bundle; without it the
system's trust store refuses the store, with an error that names neither host nor bucket; a missing or
unreadable bundle is a configuration error at load time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.backends.http_pool import UpstreamPool
from gateway.backends.s3 import S3Backend
from gateway.backends.s3_source import S3Source
from gateway.config import parse_policy
from gateway.config.backends import S3Backend as S3Config
from gateway.errors import ConfigError, GatewayError
from gateway.models import FetchRequest
from tests.browsers.storage import running_storage, storage_client
from tests.browsers.tls import TestCA
from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestCA]]:
    ca = TestCA.create(tmp_path_factory.mktemp("company-ca"))
    with running_storage(ca, "127.0.0.4", {"raw": None}) as endpoint:
        storage_client(endpoint, ca).put_object(Bucket="raw", Key="data/a.bin", Body=b"abc")
        yield endpoint, ca


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def backend(endpoint: str, bundle: Path | None) -> S3Backend:
    return S3Backend(S3Config(kind="s3", bucket="raw", prefix="data/", endpoint_url=endpoint, addressing_style="path",
                              ca_bundle=bundle))


async def _read(source: S3Source) -> bytes:
    fetched = await source.fetch("a.bin", FetchRequest())
    assert fetched.body is not None
    try:
        return b"".join([chunk async for chunk in fetched.body])
    finally:
        fetched.release()


def test_listing_and_proxy_reads_trust_the_bundle(store: tuple[str, TestCA]) -> None:
    endpoint, ca = store
    trusted = backend(endpoint, ca.cert)
    page = asyncio.run(trusted.list_page("", None, 10))
    assert [item.key for item in page.objects] == ["a.bin"]

    async def read() -> bytes:
        pool = UpstreamPool()
        try:
            return await _read(S3Source(trusted, pool))
        finally:
            await pool.aclose()

    assert asyncio.run(read()) == b"abc"


def test_without_the_bundle_the_store_is_refused_without_naming_it(store: tuple[str, TestCA]) -> None:
    endpoint, _ = store
    untrusted = backend(endpoint, None)
    with pytest.raises(GatewayError) as listing:
        asyncio.run(untrusted.list_page("", None, 10))

    async def read() -> None:
        pool = UpstreamPool()
        try:
            await _read(S3Source(untrusted, pool))
        finally:
            await pool.aclose()

    with pytest.raises(GatewayError) as proxied:
        asyncio.run(read())
    for error in (listing.value, proxied.value):
        assert error.status in (502, 503)
        assert "127.0.0.4" not in error.detail and "raw" not in error.detail


@pytest.mark.parametrize(("content", "problem"), [(None, "no file"), (b"not a certificate", "not a readable PEM")])
def test_a_bad_bundle_is_a_config_error(tmp_path: Path, content: bytes | None, problem: str) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        parse_policy(f"""version: 1
datasets:
  raw:
    backend: {{kind: s3, bucket: raw, endpoint_url: "https://s3.internal:9000", ca_bundle: "{bundle}"}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
""")
    assert any(problem in line and "ca_bundle" in line for line in error.value.problems), error.value.problems
