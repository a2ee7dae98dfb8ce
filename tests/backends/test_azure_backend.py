"""The Azure backend against Azurite, which checks SAS signatures, expiry and ``spr``: redirect URLs open
for hostile keys, tampered or expired ones are refused, ``sip`` is signed, and listing finds the keys.
(User delegation keys: test_azure_delegation.py.)"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from gateway.backends.azure import AzureBackend
from gateway.config.backends import AzureBackend as AzureConfig
from gateway.errors import BadGateway, ConfigError, NotFound
from tests.azurite.harness import ACCOUNT, ACCOUNT_KEY, Azurite, running_azurite

CONTAINER = "media-zq7"
PREFIX = "vault/"
OBJECTS: dict[str, bytes] = {
    "images/frame 0001.jpg": b"\xff\xd8\xff\xe0 jpeg bytes",
    "images/caf\u00e9/\u65e5\u672c\u8a9e \u00fc.png": "unicode \u00e9".encode(),
    "images/a+b~c.bin": bytes(range(256)),
    "images/100%/x=1&y=2?.txt": b"percent and query characters",
    "q/!*'();:@$,[]#.txt": b"reserved characters",
    "deep/" + "d" * 200 + "/" + "\U0001f600" * 40 + ".bin": b"a long key",
}
OUTSIDE = {"vault-other/x.txt": b"not under the prefix", "vault/folder/": b""}
ENV = {"AZURE_TEST_KEY": ACCOUNT_KEY}


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with running_azurite() as server:
        container = server.service().create_container(CONTAINER)
        for key, body in OBJECTS.items():
            container.upload_blob(PREFIX + key, body)
        for name, body in OUTSIDE.items():
            container.upload_blob(name, body)
        yield server


def backend(azurite: Azurite, **options: object) -> AzureBackend:
    config = AzureConfig.model_validate({
        "kind": "azure", "account": ACCOUNT, "container": CONTAINER, "prefix": PREFIX, "endpoint": azurite.endpoint,
        "credential": "account_key", "account_key_env": "AZURE_TEST_KEY", **options})
    return AzureBackend(config, environ=ENV)


def sign(target: AzureBackend, keys: list[str], *, signed_at: int | None = None, expires_in: int = 300) -> list[str]:
    signed = asyncio.run(target.sign(keys, signed_at=signed_at or int(time.time()), expires_in=expires_in))
    return [url.url for url in signed]


def with_query(url: str, change: dict[str, str | None]) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name, value in change.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.parametrize("version", ["2026-10-06", "2025-11-05"])
def test_redirect_urls_open_byte_for_byte(azurite: Azurite, version: str) -> None:
    keys = sorted(OBJECTS)
    urls = sign(backend(azurite, api_version=version), keys)
    for key, url in zip(keys, urls, strict=True):
        query = dict(parse_qsl(urlsplit(url).query))
        assert (query["sp"], query["sr"], query["sv"]) == ("r", "b", version)
        assert "spr" not in query  # plain http (Azurite): an https-only SAS could not be used
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, (key, response.text)
        assert response.content == OBJECTS[key]


def test_response_overrides_are_signed_and_served(azurite: Azurite) -> None:
    [url] = sign(backend(azurite, response_content_type="image/png",
                         response_content_disposition='attachment; filename="frame.png"'), ["images/a+b~c.bin"])
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="frame.png"'
    assert httpx.get(with_query(url, {"rsct": "text/html"}), timeout=10).status_code == 403


def test_tampered_urls_are_refused(azurite: Azurite) -> None:
    [url, other] = sign(backend(azurite), ["images/a+b~c.bin", "images/frame 0001.jpg"])
    assert httpx.get(url, timeout=10).status_code == 200
    signature = dict(parse_qsl(urlsplit(url).query))["sig"]
    forged = [
        with_query(url, {"sig": ("A" if signature[0] != "A" else "B") + signature[1:]}),
        with_query(url, {"se": "2099-01-01T00:00:00Z"}),  # a longer life
        with_query(url, {"sp": "rw"}),  # more permissions
        url.replace("a%2Bb~c.bin", "frame%200001.jpg"),  # the signature of one blob on another
        with_query(other, {"sig": signature}),
        with_query(url, {"rsct": "text/html"}),  # an override the gateway never signed
    ]
    for bad in forged:
        assert httpx.get(bad, timeout=10).status_code == 403, bad


def test_expired_urls_are_refused(azurite: Azurite) -> None:
    target = backend(azurite)
    now = int(time.time())
    [expired] = sign(target, ["images/a+b~c.bin"], signed_at=now - 400, expires_in=300)
    [fresh] = sign(target, ["images/a+b~c.bin"], signed_at=now - 400, expires_in=600)
    assert httpx.get(expired, timeout=10).status_code == 403
    assert httpx.get(fresh, timeout=10).status_code == 200


def test_https_only_urls_are_refused_over_http(azurite: Azurite) -> None:
    """``spr=https`` for an https endpoint; Azurite (plain http here) enforces it."""
    secure = backend(azurite, endpoint=azurite.endpoint.replace("http://", "https://"))
    [url] = sign(secure, ["images/a+b~c.bin"])
    assert dict(parse_qsl(urlsplit(url).query))["spr"] == "https"
    assert httpx.get(url.replace("https://", "http://", 1), timeout=10).status_code == 403
    assert httpx.get(with_query(url, {"spr": None}).replace("https://", "http://", 1), timeout=10).status_code == 403


def test_sip_is_in_every_url_and_signed(azurite: Azurite) -> None:
    bound = backend(azurite, network_binding={"source_ips": ["203.0.113.0/25", "203.0.113.128/25"]})
    urls = sign(bound, sorted(OBJECTS))
    for url in urls:
        assert dict(parse_qsl(urlsplit(url).query))["sip"] == "203.0.113.0-203.0.113.255"
    # Azurite does not enforce sip (its IP check is a stub), but sip is signed: it cannot be changed or removed.
    assert httpx.get(urls[0], timeout=10).status_code == 200
    assert httpx.get(with_query(urls[0], {"sip": "0.0.0.0-255.255.255.255"}), timeout=10).status_code == 403
    assert httpx.get(with_query(urls[0], {"sip": None}), timeout=10).status_code == 403


def test_urls_are_deterministic_within_a_time_bucket(azurite: Azurite) -> None:
    keys = sorted(OBJECTS)
    now = int(time.time())
    first = sign(backend(azurite), keys, signed_at=now)
    assert sign(backend(azurite), keys, signed_at=now) == first  # another replica, same inputs
    assert sign(backend(azurite), keys, signed_at=now + 1) != first
    assert sign(backend(azurite), keys, signed_at=now, expires_in=301) != first


def test_a_wrong_account_key_signs_urls_the_storage_refuses(azurite: Azurite) -> None:
    wrong = AzureBackend(AzureConfig.model_validate({
        "kind": "azure", "account": ACCOUNT, "container": CONTAINER, "prefix": PREFIX, "endpoint": azurite.endpoint,
        "credential": "account_key", "account_key_env": "K"}), environ={"K": base64.b64encode(b"w" * 64).decode()})
    [url] = sign(wrong, ["images/a+b~c.bin"])
    assert httpx.get(url, timeout=10).status_code == 403
    with pytest.raises(BadGateway):  # and refuses its listing
        asyncio.run(wrong.list_page("", None, 10))


def test_a_missing_or_malformed_account_key_is_a_config_error(azurite: Azurite, tmp_path: Path) -> None:
    config = {"kind": "azure", "account": ACCOUNT, "container": CONTAINER, "endpoint": azurite.endpoint,
              "credential": "account_key"}
    with pytest.raises(ConfigError, match="environment variable AZURE_TEST_KEY is not set"):
        AzureBackend(AzureConfig.model_validate({**config, "account_key_env": "AZURE_TEST_KEY"}), environ={})
    key_file = tmp_path / "key"
    key_file.write_text("not base64 at all: s3cr3t!")
    with pytest.raises(ConfigError, match="does not hold a base64 storage account key") as caught:
        AzureBackend(AzureConfig.model_validate({**config, "account_key_file": str(key_file)}))
    assert "s3cr3t" not in str(caught.value)
    key_file.write_text(ACCOUNT_KEY + "\n")
    loaded = AzureBackend(AzureConfig.model_validate({**config, "account_key_file": str(key_file)}))
    assert loaded.health() == {"kind": "azure", "credential": "account_key", "network_binding": False, "ok": True}
    with pytest.raises(NotFound):
        asyncio.run(backend(azurite, container="no-such-container").list_page("", None, 10))
