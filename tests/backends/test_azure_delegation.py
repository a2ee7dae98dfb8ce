"""User delegation SAS, end to end: azure-identity's ManagedIdentityCredential gets tokens from a fake Entra
endpoint on a real socket, Azurite (HTTPS, ``--oauth basic``) answers ``get_user_delegation_key`` and checks
the SAS signed with that key. Keys are replaced at half their life, URLs never outlive their key, and a
storage or identity outage keeps a valid key signing, then becomes 503."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from gateway.backends.azure import AzureBackend
from gateway.backends.azure_keys import MARGIN, RETRY_AFTER
from gateway.backends.azure_sas import iso
from gateway.config.backends import AzureBackend as AzureConfig
from gateway.errors import Unavailable
from tests.azurite.entra import OID, TID, TokenEndpoint
from tests.azurite.harness import ACCOUNT, Azurite, make_tls, running_azurite
from tests.support import free_port

CONTAINER = "scans-zq7"
OBJECTS = {"ct/caf\u00e9 1.dcm": b"dicom bytes", "ct/a+b/c~d.bin": bytes(range(256))}
LIFE = 3600  # the shortest delegation_key_life: a new key every 30 minutes


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    tls = make_tls(tmp_path_factory.mktemp("azurite-tls"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))  # the SDK's requests transport trusts the test CA
        with running_azurite(tls=tls) as server:
            container = server.service().create_container(CONTAINER)
            for key, body in OBJECTS.items():
                container.upload_blob(key, body)
            yield server


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch, secure: Azurite) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    for name, value in endpoint.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(secure.ca))
    yield endpoint
    endpoint.close()


def backend(azurite: Azurite, clock: Callable[[], float] = time.time, **options: object) -> AzureBackend:
    config = AzureConfig.model_validate({
        "kind": "azure", "account": ACCOUNT, "container": CONTAINER, "endpoint": azurite.endpoint,
        "credential": "managed_identity", "api_version": "2025-11-05", "delegation_key_life": LIFE, **options})
    return AzureBackend(config, clock=clock)  # builds azure-identity's ManagedIdentityCredential from the environment


def sign(target: AzureBackend, keys: list[str], *, signed_at: int, expires_in: int = 300) -> list[tuple[str, float]]:
    signed = asyncio.run(target.sign(keys, signed_at=signed_at, expires_in=expires_in))
    return [(url.url, url.expires_at) for url in signed]


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_user_delegation_urls_open(secure: Azurite, entra: TokenEndpoint) -> None:
    now = int(time.time())
    target = backend(secure, clock=lambda: now)  # frozen: no half-life boundary passes during the test
    signed = sign(target, sorted(OBJECTS), signed_at=now)
    for (url, _), key in zip(signed, sorted(OBJECTS), strict=True):
        fields = query(url)
        assert (fields["skoid"], fields["sktid"], fields["sks"], fields["sp"], fields["spr"]) == (OID, TID, "b", "r",
                                                                                                   "https")
        response = httpx.get(url, verify=secure.verify, timeout=10)
        assert response.status_code == 200, response.text
        assert response.content == OBJECTS[key]
        assert httpx.get(url.replace("sp=r", "sp=rw"), verify=secure.verify, timeout=10).status_code == 403
    sign(target, sorted(OBJECTS), signed_at=now + 1)
    # One token and one key for all of it.
    assert (entra.grants, target.delegation.fetched if target.delegation else None) == (1, 1)
    assert target.health()["ok"] is True


def test_keys_are_asked_for_on_a_grid_and_replaced_at_half_their_life(secure: Azurite, entra: TokenEndpoint) -> None:
    real = time.time()
    start = int(real) // (LIFE // 2) * (LIFE // 2)
    now = [float(start + 10)]
    target = backend(secure, clock=lambda: now[0])
    keys = target.delegation
    assert keys is not None
    [(first, _)] = sign(target, ["ct/a+b/c~d.bin"], signed_at=int(now[0]))
    assert (query(first)["skt"], query(first)["ske"]) == (iso(start), iso(start + LIFE))
    now[0] = start + LIFE // 2 - 1  # just before half its life: the same key
    sign(target, ["ct/a+b/c~d.bin"], signed_at=int(now[0]))
    assert keys.fetched == 1
    now[0] = start + LIFE // 2  # half its life: replaced, on the next grid line
    [(second, _)] = sign(target, ["ct/a+b/c~d.bin"], signed_at=int(now[0]))
    assert keys.fetched == 2
    assert (query(second)["skt"], query(second)["ske"]) == (iso(start + LIFE // 2), iso(start + LIFE // 2 + LIFE))
    # Another replica at another moment of the same window asks for the same key, and signs the same URL.
    now[0] = start + LIFE // 2 + 600
    [(again, _)] = sign(backend(secure, clock=lambda: now[0]), ["ct/a+b/c~d.bin"], signed_at=start + LIFE // 2)
    assert again == second


def test_a_url_never_outlives_its_key(secure: Azurite, entra: TokenEndpoint) -> None:
    now = int(time.time())
    target = backend(secure, clock=lambda: now)
    [(url, expires_at)] = sign(target, ["ct/caf\u00e9 1.dcm"], signed_at=now, expires_in=7200)
    key_expiry = (now // (LIFE // 2) * (LIFE // 2)) + LIFE
    assert expires_at == key_expiry - MARGIN < now + 7200
    assert query(url)["se"] == iso(expires_at) and query(url)["ske"] == iso(key_expiry)
    assert httpx.get(url, verify=secure.verify, timeout=10).status_code == 200
    [(short, short_expiry)] = sign(target, ["ct/caf\u00e9 1.dcm"], signed_at=now, expires_in=60)
    assert short_expiry == now + 60  # under the key's life: not capped
    with pytest.raises(Unavailable, match="expires too soon"):
        sign(target, ["ct/caf\u00e9 1.dcm"], signed_at=key_expiry - MARGIN, expires_in=60)


def test_a_storage_outage_keeps_a_valid_key_then_is_503(secure: Azurite, entra: TokenEndpoint) -> None:
    real = int(time.time())
    start = real // (LIFE // 2) * (LIFE // 2)
    now = [float(real)]
    target = backend(secure, clock=lambda: now[0])
    keys = target.delegation
    assert keys is not None
    [(before, _)] = sign(target, ["ct/a+b/c~d.bin"], signed_at=int(now[0]))
    # The storage goes away (a real client of a port nothing listens on), and the key is due for replacement.
    keys.service = BlobServiceClient(f"https://127.0.0.1:{free_port()}/{ACCOUNT}", credential=keys.service.credential,
                                     retry_total=0)
    now[0] = start + LIFE // 2 + 1
    [(during, _)] = sign(target, ["ct/a+b/c~d.bin"], signed_at=int(now[0]))
    assert query(during)["skt"] == query(before)["skt"] and keys.failures == 1
    assert httpx.get(during, verify=secure.verify, timeout=10).status_code == 200  # the old key still signs
    sign(target, ["ct/a+b/c~d.bin"], signed_at=int(now[0]))
    assert keys.failures == 1  # not asked again before RETRY_AFTER
    now[0] = start + LIFE - MARGIN  # the old key is spent
    with pytest.raises(Unavailable) as caught:
        sign(target, ["ct/a+b/c~d.bin"], signed_at=int(now[0]), expires_in=60)
    assert caught.value.retry_after == int(RETRY_AFTER)
    assert keys.failures == 2 and target.health()["ok"] is False
    assert "127.0.0.1" not in caught.value.detail and ACCOUNT not in caught.value.detail


@pytest.mark.parametrize("mode", ["fail", "foreign"])
def test_no_token_or_a_refused_token_is_503(secure: Azurite, entra: TokenEndpoint, mode: str) -> None:
    entra.mode = mode  # the token endpoint fails, or its tokens are refused by the storage
    target = backend(secure)
    with pytest.raises(Unavailable) as caught:
        sign(target, ["ct/a+b/c~d.bin"], signed_at=int(time.time()))
    # A fixed text: nothing of the identity's or the storage's answer (tenant, client, host) reaches a client.
    assert caught.value.detail == "no user delegation key could be obtained from Azure Storage; retry shortly"
    assert caught.value.retry_after == int(RETRY_AFTER)
    assert target.health()["ok"] is False


def test_listing_with_an_entra_token(secure: Azurite, entra: TokenEndpoint) -> None:
    page = asyncio.run(backend(secure, prefix="ct/").list_page("", None, 100))
    assert sorted(item.key for item in page.objects) == ["a+b/c~d.bin", "caf\u00e9 1.dcm"]
