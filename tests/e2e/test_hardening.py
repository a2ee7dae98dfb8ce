"""The edge against hostile clients, on ``gateway serve`` as a real process: slow and stalled
sockets, oversized heads, DNS rebinding, hostile batch bodies, honest errors and counts, and the
operators' listener. Each case is the reproduction from the issue that found it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import make_data_dir
from tests.e2e.helpers import assert_error, raw_request
from tests.support import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 2.0  # GATEWAY_HEADER_TIMEOUT and GATEWAY_BODY_TIMEOUT in these tests


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]
    stderr: Path
    audit: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def audit_records(self) -> list[dict[str, object]]:
        time.sleep(0.2)  # the audit writer flushes every 25 ms
        return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]


def _serve(tmp: Path, **settings: str) -> Iterator[Served]:
    data = make_data_dir(tmp)
    audit = tmp / "audit.jsonl"
    policy = tmp / "policy.yaml"
    policy.write_text(f"""
version: 1
cors: {{allow_origins: [http://app.example.test]}}
audit: {{sinks: [{{kind: file, path: "{audit}"}}]}}
datasets:
  local:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}]
""")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_MAX_CONCURRENCY": "4", "GATEWAY_HEADER_TIMEOUT": str(DEADLINE),
                "GATEWAY_BODY_TIMEOUT": str(DEADLINE), "GATEWAY_KEEPALIVE_TIMEOUT": str(DEADLINE),
                "GATEWAY_SIGNING_KEY": "h" * 32, **settings})
    stderr = tmp / "stderr.log"
    with stderr.open("wb") as err:
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(policy), "--port", str(port)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
    try:
        wait_for_port(port, timeout=30)
        yield Served(port, proc, stderr, audit)
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("hardening"))


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_response(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or the timeout passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def _json_body(raw: bytes) -> dict[str, object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    assert b"x-request-id:" in head.lower() and b"nosniff" in head.lower(), head
    parsed: dict[str, object] = json.loads(body)
    return parsed


# -- 1. slow clients cannot lock everyone out ---------------------------------------------------------

def test_stalled_bodies_free_their_slots_within_the_deadline(served: Served) -> None:
    stalled = []
    for _ in range(4):  # as many as GATEWAY_MAX_CONCURRENCY
        sock = _connect(served.port)
        sock.sendall(f"POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode())
        stalled.append(sock)
    time.sleep(0.3)
    started = time.monotonic()
    while True:  # another user, with nothing to wait for: served again once the body deadline passed
        status = httpx.get(f"{served.url}/v1/datasets/local/objects/a.bin").status_code
        if status == 302:
            break
        assert status == 503, status  # shed while the slots are held, never an unbounded queue
        assert time.monotonic() - started < DEADLINE + 1.5, "the stalled bodies held their slots"
        time.sleep(0.1)
    for sock in stalled:
        raw = _read_response(sock, DEADLINE + 2)
        assert _status(raw) == 408, raw[:300]
        assert _json_body(raw)["error"] == "request_timeout"
        sock.close()


def test_stalled_and_idle_heads_are_closed_after_the_head_deadline(served: Served) -> None:
    half = _connect(served.port)
    half.sendall(b"GET /v1/datasets/local/objects/a.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    idle = _connect(served.port)  # connects and sends nothing at all
    started = time.monotonic()
    for sock in (half, idle):
        raw = _read_response(sock, DEADLINE + 3)  # answered, then closed by the server
        assert _status(raw) == 408 and _json_body(raw)["error"] == "request_timeout", raw[:300]
    assert time.monotonic() - started < DEADLINE + 2.5
    half.close()
    idle.close()


def test_an_idle_keep_alive_connection_is_closed(served: Served) -> None:
    sock = _connect(served.port)
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
    started = time.monotonic()
    raw = _read_response(sock, DEADLINE + 4)  # the answer, then nothing until the server closes
    assert _status(raw) == 200
    assert DEADLINE - 0.5 < time.monotonic() - started < DEADLINE + 3
    sock.close()


@pytest.mark.parametrize(("head", "code"), [
    (b"X-Big: " + b"a" * 1_048_576 + b"\r\n", "headers_too_large"),  # one 1 MiB header
    (b"".join(b"X-H%d: v\r\n" % i for i in range(150)), "headers_too_many"),
])
def test_heads_over_the_limits_are_431(served: Served, head: bytes, code: str) -> None:
    sock = _connect(served.port)
    try:
        sock.sendall(b"GET /v1/datasets/local/objects/a.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before all of it is sent
    raw = _read_response(sock, 5)
    assert _status(raw) == 431, raw[:300]
    assert _json_body(raw)["error"] == code
    sock.close()


def test_memory_stays_flat_under_streamed_oversized_heads(served: Served) -> None:
    before = served.rss_kb()
    socks = [_connect(served.port) for _ in range(4)]
    chunk = b"a" * 65536
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
    sent = [0] * 4
    for _ in range(768):  # up to 48 MiB per socket, as in the report
        for i, sock in enumerate(socks):
            if sent[i] < 0:
                continue
            try:
                sock.send(chunk)
                sent[i] += len(chunk)
            except OSError:
                sent[i] = -1  # closed by the server: the point
        if all(s < 0 for s in sent):
            break
    growth_mb = (served.rss_kb() - before) / 1024
    assert all(s < 0 for s in sent), f"a flood was still accepted after {max(sent)} bytes"
    assert growth_mb < 16, f"RSS grew by {growth_mb:.0f} MB"
    for sock in socks:
        sock.close()


# -- 2. DNS rebinding ----------------------------------------------------------------------------------

def test_a_foreign_host_is_refused_even_from_loopback(served: Served) -> None:
    """The reproduction: a page on rebind.attacker.example resolving to 127.0.0.1 read the files."""
    target = b"/v1/datasets/local/objects/sample.png?format=json"
    forged = raw_request(served.port, target, headers=[(b"Host", f"rebind.attacker.example:{served.port}".encode())])
    assert_error(forged, 421, "host_not_allowed")
    ok = raw_request(served.port, b"/v1/datasets/local/objects/a.bin?format=json",
                     headers=[(b"Host", f"localhost:{served.port}".encode())])
    assert ok.status == 200
    local_url = json.loads(ok.body)["url"].replace(f"http://127.0.0.1:{served.port}", "")
    fetched = raw_request(served.port, local_url.encode(), headers=[(b"Host", b"rebind.attacker.example")])
    assert_error(fetched, 421, "host_not_allowed")  # nor the bytes behind a signed URL


def test_a_missing_or_doubled_host_is_400_and_probes_answer_any_host(served: Served) -> None:
    for head in (b"GET /v1/datasets/local/objects/a.bin HTTP/1.1\r\n\r\n",
                 b"GET /v1/datasets/local/objects/a.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n"):
        sock = _connect(served.port)
        sock.sendall(head)
        raw = _read_response(sock, 3)
        sock.close()
        assert _status(raw) == 400 and _json_body(raw)["error"] == "bad_request", raw[:300]
    # Kubernetes probes send the pod's IP: they are answered whatever the Host.
    assert raw_request(served.port, b"/healthz", headers=[(b"Host", b"10.42.0.17:8080")]).status == 200
    assert raw_request(served.port, b"/readyz", headers=[(b"Host", b"10.42.0.17:8080")]).status == 200


# -- 3. hostile batch bodies ---------------------------------------------------------------------------

def _sign(served: Served, body: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return httpx.post(f"{served.url}/v1/sign", content=body, headers=headers, timeout=10)


def test_a_key_nested_a_thousand_deep_is_400_json_and_audited(served: Served) -> None:
    response = _sign(served, b'{"dataset": "local", "keys": [' + b"[" * 1000 + b"]" * 1000 + b"]}")
    assert_error(response, 400, "bad_request")
    assert "nests JSON" in response.json()["detail"]
    record = [r for r in served.audit_records() if r["request_id"] == response.headers["x-request-id"]]
    assert len(record) == 1 and record[0]["reason"] == "bad_request" and record[0]["status"] == 400
    assert "RecursionError" not in served.stderr.read_text() and "Traceback" not in served.stderr.read_text()


def test_one_bad_key_is_its_own_error_never_the_batch(served: Served) -> None:
    body = b'{"dataset": "local", "keys": ["a.bin", "\\ud800", 5, ["a"], null, {"k": 1}, "hello.txt"]}'
    response = _sign(served, body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("error") for r in results] == [None, "invalid_key", "invalid_key", "invalid_key", "invalid_key",
                                                 "invalid_key", None]
    assert [r["key"] for r in results[2:6]] == [None, None, None, None]  # never Python text such as "['a']"
    assert results[1]["key"] == "\ufffd" and "UTF-8" in results[1]["detail"]
    assert results[3]["detail"] == "key 3 is an array, not a string"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml", "text/json",
                                          "application/json-patch+json", "application/jsonx", "*/*", ""])
def test_the_batch_takes_only_application_json(served: Served, content_type: str | None) -> None:
    """A cross-site page can POST any of these without a CORS preflight; JSON needs one."""
    response = _sign(served, b'{"dataset": "local", "keys": ["a.bin"]}', content_type)
    assert_error(response, 415, "unsupported_media_type")
    assert _sign(served, b'{"dataset": "local", "keys": ["a.bin"]}', "application/json; charset=utf-8"
                 ).status_code == 200


# -- 4. honest errors and counts -----------------------------------------------------------------------

def test_a_client_gone_mid_body_is_counted_apart_and_logged_once(served: Served) -> None:
    def gone() -> int:
        metrics = httpx.get(f"{served.url}/metrics").text
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
                   if line.startswith("gateway_requests_total{") and 'status="499"' in line)

    before = gone()
    sock = _connect(served.port)
    sock.sendall(f"POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Type: application/json\r\n"
                 "Content-Length: 1000\r\n\r\n{\"data".encode())
    time.sleep(0.3)
    sock.close()
    deadline = time.monotonic() + 5
    while gone() == before:  # counted within the metrics flush (about a second)
        assert time.monotonic() < deadline, "the disconnect was not counted as 499"
        time.sleep(0.2)
    log = served.stderr.read_text()
    assert "the client went away" in log
    assert "ClientDisconnect" not in log and "Traceback" not in log


def test_every_answer_says_nosniff_and_varies_by_origin(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        answers = [client.get("/v1/datasets/local/objects/a.bin"), client.get("/v1/datasets/local/objects/%2e%2e"),
                   client.get("/nope"), client.get("/healthz"), client.post("/v1/sign", content=b"{"),
                   client.get("/v1/datasets/local/objects/a.bin", headers={"Origin": "https://evil.example"}),
                   client.options("/v1/sign", headers={"Origin": "http://app.example.test",
                                                       "Access-Control-Request-Method": "POST"})]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert "origin" in response.headers.get("vary", "").lower(), (response.url, response.headers)


@pytest.mark.parametrize("request_head", [
    b"get /v1/datasets/local/objects/a.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # a lowercase method
    b"POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # a 70 KB URL
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n",
])
def test_requests_the_parser_refuses_get_the_gateways_json(served: Served, request_head: bytes) -> None:
    sock = _connect(served.port)
    try:
        sock.sendall(request_head)
    except OSError:
        pass
    raw = _read_response(sock, 5)
    sock.close()
    assert _status(raw) in (400, 431), raw[:300]
    assert _json_body(raw)["error"] in ("bad_request", "headers_too_large")


# -- 6. less for strangers to read --------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, int]]:
    admin = free_port()
    for served in _serve(tmp_path_factory.mktemp("admin"), GATEWAY_ADMIN_PORT=str(admin)):
        wait_for_port(admin, timeout=10)
        yield served, admin


def test_the_admin_port_serves_what_operators_read_and_nothing_else(with_admin: tuple[Served, int]) -> None:
    served, admin = with_admin
    with httpx.Client(base_url=served.url, timeout=10) as public, \
            httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=10) as operators:
        assert_error(public.get("/metrics"), 404)
        assert public.get("/readyz").json() == {"status": "ready"}  # no datasets, backends or credentials
        assert "gateway_requests_total" in operators.get("/metrics").text
        detailed = operators.get("/readyz").json()
        assert detailed["status"] == "ready" and "local" in detailed["backends"]
        assert operators.get("/healthz").status_code == 200
        assert_error(operators.get("/v1/datasets/local/objects/a.bin"), 404)  # not the API
        for client in (public, operators):
            assert_error(client.get("/openapi.json"), 404)


def test_the_schema_is_served_only_when_enabled(tmp_path: Path) -> None:
    for served in _serve(tmp_path, GATEWAY_OPENAPI="true"):
        schema = httpx.get(f"{served.url}/openapi.json").json()
        assert "/v1/sign" in schema["paths"]
