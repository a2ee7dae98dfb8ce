"""When the storage fails, a proxy dataset answers with the gateway's JSON, never the storage's:
credentials refused is 502, a timeout 504, unreachable 503 with Retry-After."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.delivery.conftest import BUCKET, PREFIX
from tests.delivery.leaks import assert_no_leak
from tests.e2e.helpers import assert_error
from tests.support import RunningGateway, free_port


def _policy(tmp_path: Path, endpoint: str) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""version: 1
datasets:
  vision:
    delivery: proxy
    backend: {{kind: s3, bucket: {BUCKET}, prefix: {PREFIX}, endpoint_url: "{endpoint}", addressing_style: path}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
""")
    return policy


@pytest.fixture
def silent_storage() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def test_wrong_credentials_are_502(s3_store: str, s3_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   gateway_server: Callable[..., RunningGateway]) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")  # s3rver: SignatureDoesNotMatch
    gw = gateway_server(config=_policy(tmp_path, s3_store))
    response = httpx.get(f"{gw.url}/v1/datasets/vision/objects/big.bin", timeout=10)
    assert_error(response, 502, "upstream_refused")
    assert_no_leak(response, s3_store)
    assert "SignatureDoesNotMatch" not in response.text and "<Error>" not in response.text


def test_a_silent_storage_is_504(silent_storage: str, s3_env: None, tmp_path: Path,
                                 gateway_server: Callable[..., RunningGateway]) -> None:
    gw = gateway_server(config=_policy(tmp_path, silent_storage), upstream_timeout=1.0)
    response = httpx.get(f"{gw.url}/v1/datasets/vision/objects/big.bin", timeout=10)
    assert_error(response, 504, "upstream_timeout")
    assert_no_leak(response, silent_storage)


def test_an_unreachable_storage_is_503_with_retry_after(s3_env: None, tmp_path: Path,
                                                        gateway_server: Callable[..., RunningGateway]) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = gateway_server(config=_policy(tmp_path, endpoint))
    for method in ("GET", "HEAD"):
        response = httpx.request(method, f"{gw.url}/v1/datasets/vision/objects/big.bin", timeout=10)
        assert response.status_code == 503 and response.headers["retry-after"]
        if method == "GET":
            assert_error(response, 503, "unavailable")
        assert_no_leak(response, endpoint)


@pytest.fixture
def breaking_storage() -> Iterator[str]:
    """Answers 200 with Content-Length: 1 MiB, sends 100 KiB of it, and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nContent-Type: application/x-test\r\n\r\n"
                             + b"x" * 102400)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_a_storage_that_breaks_off_mid_body_aborts_the_answer(breaking_storage: str, s3_env: None, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture,
                                                             gateway_server: Callable[..., RunningGateway]) -> None:
    gw = gateway_server(config=_policy(tmp_path, breaking_storage))
    with pytest.raises(httpx.RemoteProtocolError):  # truncated: never a short "success"
        httpx.get(f"{gw.url}/v1/datasets/vision/objects/big.bin", timeout=10)
    assert not [r for r in caplog.records if r.getMessage() == "unhandled error"]
