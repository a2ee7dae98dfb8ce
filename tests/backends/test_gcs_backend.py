"""GcsBackend: key, HMAC and IAM signBlob signers (the IAM API faked on a real socket)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.oauth2.credentials
import pytest
from google.oauth2 import service_account

from gateway.backends import Backend
from gateway.backends.gcs import GcsBackend, IamSignBlob
from gateway.backends.gcs_v4 import rsa_signer
from gateway.config import GcsBackend as GcsConfig
from gateway.errors import Unavailable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gcs-v4"
SA_FILE = FIXTURES / "test_service_account.not-a-test.json"
SA = json.loads(SA_FILE.read_text())
SIMPLE_GET = next(
    v
    for v in json.loads((FIXTURES / "v4_signatures.json").read_text())["signingV4Tests"]
    if v["description"] == "Simple GET"
)
VECTOR_TIME = 1549011600  # 2019-02-01T09:00:00Z, the vector's timestamp


def _config(**overrides: object) -> GcsConfig:
    return GcsConfig.model_validate({"kind": "gcs", "bucket": "test-bucket", **overrides})


def _sign(
    backend: GcsBackend, keys: list[str], signed_at: int = VECTOR_TIME, expires_in: int = 10
) -> list[str]:
    return [u.url for u in asyncio.run(backend.sign(keys, signed_at=signed_at, expires_in=expires_in))]


@dataclass
class FakeIam:
    """IAM Credentials ``signBlob``, signing with the test service account's key like Google would."""

    url: str = ""
    mode: str = "ok"  # ok | error | slow
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def fake_iam() -> Iterator[FakeIam]:
    state = FakeIam()
    sign = rsa_signer(SA["private_key"])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            if state.mode == "slow":
                time.sleep(3)
            if state.mode == "error":
                reply, status = (
                    {"error": {"code": 403, "message": "Permission iam.serviceAccounts.signBlob denied"}},
                    403,
                )
            else:
                signed = sign(base64.b64decode(body["payload"]))
                reply, status = (
                    {"keyId": SA["private_key_id"], "signedBlob": base64.b64encode(signed).decode()},
                    200,
                )
            data = json.dumps(reply).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (the timeout test)
                pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False
        request_queue_size = 128  # the default backlog of 5 resets a burst of concurrent connections

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _iam_backend(
    fake: FakeIam, *, timeout: float = 2.0, email: str | None = SA["client_email"]
) -> GcsBackend:
    token = google.oauth2.credentials.Credentials(token="ya29.fake-token")  # noqa: S106 - a fake token
    signer = IamSignBlob(token, base_url=fake.url, timeout=timeout)
    return GcsBackend(_config(signer="iam", service_account_email=email), iam_signer=signer)


def test_key_signer_matches_the_conformance_vector() -> None:
    backend = GcsBackend(_config(credentials_file=str(SA_FILE)))
    assert isinstance(backend, Backend)
    assert (backend.kind, backend.shared_cache, backend.signer) == ("gcs", True, "key")
    assert _sign(backend, ["test-object"]) == [SIMPLE_GET["expectedUrl"]]
    assert backend.health() == {"kind": "gcs", "ok": True, "signer": "key"}


def test_injected_service_account_credentials_sign_under_the_prefix() -> None:
    credentials = service_account.Credentials.from_service_account_info(SA)
    backend = GcsBackend(_config(prefix="scans/", endpoint="http://localhost:9023"), credentials=credentials)
    [signed] = asyncio.run(backend.sign(["a b.dcm"], signed_at=VECTOR_TIME, expires_in=300))
    assert signed.url.startswith(
        "http://localhost:9023/test-bucket/scans/a%20b.dcm?X-Goog-Algorithm=GOOG4-RSA"
    )
    assert (signed.signed_at, signed.expires_at) == (VECTOR_TIME, VECTOR_TIME + 300)
    assert "X-Goog-Date=20190201T090000Z" in signed.url


def test_batches_are_signed_off_the_event_loop() -> None:
    backend = GcsBackend(_config(credentials_file=str(SA_FILE)))
    keys = [f"k{i}" for i in range(300)]

    async def run() -> tuple[list[str], float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        urls = await backend.sign(keys, signed_at=VECTOR_TIME, expires_in=60)
        elapsed = time.perf_counter() - started
        done.set()
        await task
        assert max(gaps) < elapsed / 2, (max(gaps), elapsed)  # the loop kept running while signing
        return [u.url for u in urls], elapsed

    urls, _ = asyncio.run(run())
    assert len(set(urls)) == len(keys)


def test_hmac_signer_from_the_environment() -> None:
    config = _config(hmac_access_id_env="GCS_ID", hmac_secret_env="GCS_SECRET")
    backend = GcsBackend(config, environ={"GCS_ID": "GOOG1EXAMPLE", "GCS_SECRET": "c2VjcmV0"})
    assert backend.signer == "hmac"
    [url] = _sign(backend, ["x"])
    assert "X-Goog-Algorithm=GOOG4-HMAC-SHA256&X-Goog-Credential=GOOG1EXAMPLE%2F20190201" in url
    other = GcsBackend(config, environ={"GCS_ID": "GOOG1EXAMPLE", "GCS_SECRET": "b3RoZXI="})
    assert _sign(other, ["x"]) != [url]  # the secret is what signs


def test_missing_hmac_secret_is_unavailable() -> None:
    config = _config(signer="hmac", hmac_access_id_env="GCS_ID", hmac_secret_env="GCS_SECRET")
    backend = GcsBackend(config, environ={"GCS_ID": "GOOG1EXAMPLE"})
    assert backend.health()["ok"] is False
    with pytest.raises(Unavailable, match="HMAC"):
        _sign(backend, ["x"])


def test_key_signer_without_a_key_is_unavailable(tmp_path: Path) -> None:
    backend = GcsBackend(_config(signer="key", credentials_file=str(tmp_path / "missing.json")))
    assert backend.health()["ok"] is False
    with pytest.raises(Unavailable) as info:
        _sign(backend, ["x"])
    assert str(tmp_path) not in info.value.detail


def test_iam_signblob_gives_the_same_url_as_the_key(fake_iam: FakeIam) -> None:
    backend = _iam_backend(fake_iam)
    assert backend.signer == "iam"
    assert _sign(backend, ["test-object"]) == [SIMPLE_GET["expectedUrl"]]
    [request] = fake_iam.requests
    assert request["path"] == f"/v1/projects/-/serviceAccounts/{SA['client_email']}:signBlob"
    assert request["auth"] == "Bearer ya29.fake-token"
    assert base64.b64decode(request["body"]["payload"]).decode() == SIMPLE_GET["expectedStringToSign"]


def test_iam_batch_signs_every_key(fake_iam: FakeIam) -> None:
    urls = _sign(_iam_backend(fake_iam), [f"obj-{i}" for i in range(40)])
    assert len(set(urls)) == 40 and len(fake_iam.requests) == 40


def test_iam_error_is_unavailable(fake_iam: FakeIam) -> None:
    fake_iam.mode = "error"
    with pytest.raises(Unavailable) as info:
        _sign(_iam_backend(fake_iam), ["test-object"])
    assert info.value.status == 503 and info.value.retry_after
    assert "signBlob denied" not in info.value.detail


def test_slow_iam_times_out_quickly(fake_iam: FakeIam) -> None:
    fake_iam.mode = "slow"
    backend = _iam_backend(fake_iam, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        _sign(backend, ["a", "b", "c"])
    assert time.monotonic() - started < 1.5


def test_unreachable_iam_is_unavailable() -> None:
    token = google.oauth2.credentials.Credentials(token="ya29.fake-token")  # noqa: S106
    signer = IamSignBlob(token, base_url="http://127.0.0.1:9", timeout=1.0)
    backend = GcsBackend(_config(signer="iam", service_account_email=SA["client_email"]), iam_signer=signer)
    with pytest.raises(Unavailable):
        _sign(backend, ["x"])


def test_iam_without_an_email_is_unavailable(fake_iam: FakeIam) -> None:
    with pytest.raises(Unavailable, match="service_account_email"):
        _sign(_iam_backend(fake_iam, email=None), ["x"])
    assert fake_iam.requests == []
