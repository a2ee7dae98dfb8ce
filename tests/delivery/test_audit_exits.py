"""One audit scope per request (invariant 13): every way out of an audited request leaves exactly one
record, with the status that was sent and, for an answer that carries the object, the bytes that went
out. Each request below has its own X-Request-ID; the records are counted per id.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.delivery.upstream_server import Reply, Request, raw_storage, reply
from tests.e2e.conftest import A_BIN, make_data_dir
from tests.support import RunningGateway

OBJECT = bytes(range(256)) * 40  # 10,240 bytes in the storage
TYPE = b"Content-Type: application/octet-stream"


def storage_answer(request: Request) -> Reply:
    """A storage stand-in: a normal object (GET, HEAD, 304), one that breaks off mid-body, one that
    stalls mid-body, and one that answers 416 to everything."""
    if request.path.endswith("/broken"):  # declares 10,240 bytes, sends 100, closes
        return reply(200, TYPE, body=OBJECT[:100], length=len(OBJECT), then="close")
    if request.path.endswith("/stalled"):  # declares 10,240 bytes, sends 100, then nothing
        return reply(200, TYPE, body=OBJECT[:100], length=len(OBJECT), then="hang")
    if request.path.endswith("/always416"):
        return reply(416)
    if request.headers.get("if-none-match") == '"e1"':
        return reply(304, b'ETag: "e1"', length=0)
    if request.method == "HEAD":
        return reply(200, TYPE, b'ETag: "e1"', length=len(OBJECT))
    return reply(200, TYPE, b'ETag: "e1"', body=OBJECT)


POLICY = """version: 1
defaults: {{batch_limit: 3}}
audit:
  sinks: [{{kind: file, path: "{audit}"}}]
datasets:
  local:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
  narrow:
    backend: {{kind: local, path: "{data}"}}
    allow_keys: ["hello.txt"]
    rate_limit: {{requests: 3, per: 1h}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
  office:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
  vision:
    delivery: proxy
    backend: {{kind: s3, bucket: bucket-zq7, endpoint_url: "{storage}", addressing_style: path}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
"""


class Exits:
    def __init__(self, gw: RunningGateway) -> None:
        self.gw = gw
        self.expected: dict[str, tuple[int, int | None]] = {}  # request id -> (status, bytes)
        self.n = 0

    def rid(self) -> str:
        self.n += 1
        return f"exit-{self.n:03d}"

    def get(self, path: str, status: int, sent: int | None = None, **kwargs: Any) -> httpx.Response:
        rid = self.rid()
        headers = {"X-Request-ID": rid, **kwargs.pop("headers", {})}
        response = httpx.request(kwargs.pop("method", "GET"), self.gw.url + path, headers=headers, timeout=10,
                                 **kwargs)
        assert response.status_code == status, (path, response.status_code, response.text)
        self.expected[rid] = (status, sent)
        return response

    def raw(self, head: bytes, status: int, sent: int | None = None, *, wait: float = 0.0) -> None:
        """Send ``head`` (and whatever body bytes follow it) on a socket, then leave."""
        rid = self.rid()
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as sock:
            sock.sendall(head.replace(b"RID", rid.encode()))
            if wait:
                time.sleep(wait)
                sock.recv(65536)
        self.expected[rid] = (status, sent)


def test_every_exit_leaves_exactly_one_record(tmp_path: Path, s3_env: None,
                                              gateway_server: Callable[..., RunningGateway]) -> None:
    data = make_data_dir(tmp_path)
    audit = tmp_path / "audit.jsonl"
    with raw_storage(storage_answer) as storage:
        endpoint = storage.url.split("/bucket-zq7", 1)[0]
        config = tmp_path / "policy.yaml"
        config.write_text(POLICY.format(audit=audit, data=data, storage=endpoint))
        gw = gateway_server(config=config, body_timeout=0.5)
        x = Exits(gw)
        # Allowed: a redirect, a JSON answer, a batch.
        location = x.get("/v1/datasets/local/objects/a.bin", 302).headers["location"]
        x.get("/v1/datasets/local/objects/a.bin?format=json", 200)
        x.get("/v1/sign", 200, method="POST", json={"dataset": "local", "keys": ["a.bin", "../x"]})
        # Refused by the admit step: a stranger, an unknown dataset, a bad key, a key not allowed, the rate.
        x.get("/v1/datasets/office/objects/a.bin", 401)
        x.get("/v1/datasets/nope/objects/a.bin", 401)
        x.get("/v1/datasets/local/objects/%2e%2e/x", 400)
        x.get("/v1/datasets/narrow/objects/a.bin", 403)
        x.get("/v1/datasets/narrow/objects/hello.txt", 302)
        x.get("/v1/datasets/narrow/objects/hello.txt", 302)
        x.get("/v1/datasets/narrow/objects/hello.txt", 429)
        # A batch the gateway cannot read: not JSON, not JSON at all, too large.
        x.get("/v1/sign", 415, method="POST", content=b"{}", headers={"Content-Type": "text/plain"})
        x.get("/v1/sign", 400, method="POST", content=b"{", headers={"Content-Type": "application/json"})
        x.get("/v1/sign", 413, method="POST", json={"dataset": "local", "keys": ["a", "b", "c", "d"]})
        # A route under an audited prefix that is not one.
        x.get("/v1/datasets/local/other/a.bin", 404)
        # Local-disk bytes: whole, a range, not modified, an unsatisfiable range, no such file, a bad URL.
        full = x.get(location.removeprefix(gw.url), 200, len(A_BIN))
        x.get(location.removeprefix(gw.url), 206, 10, headers={"Range": "bytes=0-9"})
        x.get(location.removeprefix(gw.url), 304, 0, headers={"If-None-Match": full.headers["etag"]})
        x.get(location.removeprefix(gw.url), 416, None, headers={"Range": "bytes=5000-"})
        missing = x.get("/v1/datasets/local/objects/missing.bin", 302).headers["location"]
        x.get(missing.removeprefix(gw.url), 404)
        x.get(location.removeprefix(gw.url).replace("sig=", "sig=A"), 403)
        # Proxy delivery: a whole object, HEAD, 304, a storage that answers 416 to its HEAD too (502),
        # one that breaks off mid-body, and a client that leaves while the storage stalls.
        x.get("/v1/datasets/vision/objects/obj", 200, len(OBJECT))
        x.get("/v1/datasets/vision/objects/obj", 200, 0, method="HEAD")
        x.get("/v1/datasets/vision/objects/obj", 304, 0, headers={"If-None-Match": '"e1"'})
        x.get("/v1/datasets/vision/objects/always416", 502, headers={"Range": "bytes=5-"})
        with pytest.raises(httpx.HTTPError):
            x.get("/v1/datasets/vision/objects/broken", 200, 100)
        x.expected[f"exit-{x.n:03d}"] = (200, 100)
        x.raw(b"GET /v1/datasets/vision/objects/stalled HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: RID\r\n\r\n",
              200, 100, wait=0.3)
        # A client that never finishes its body (408), and one that leaves before it arrives (499).
        x.raw(b"POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: RID\r\nContent-Type: application/json"
              b"\r\nContent-Length: 100\r\n\r\n{", 408, None, wait=1.0)
        x.raw(b"POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: RID\r\nContent-Type: application/json"
              b"\r\nContent-Length: 100\r\n\r\n{", 499, None)
        time.sleep(1.0)  # the stalled stream and the abandoned body are noticed by the gateway
    gw.app.runtime.audit.close()
    records: dict[str, list[dict[str, Any]]] = {}
    for line in audit.read_text().splitlines():
        record = json.loads(line)
        records.setdefault(record["request_id"], []).append(record)
    assert set(records) == set(x.expected), set(records) ^ set(x.expected)
    for rid, (status, sent) in x.expected.items():
        [record] = records[rid]  # exactly one
        assert record["status"] == status, (rid, record)
        if sent is not None:
            assert record["bytes"] == sent, (rid, record)
        assert record["policy"] == gw.app.runtime.holder.current.version


FAIL_CLOSED = """version: 1
audit:
  fail_closed: true
  sinks: [{{kind: file, path: "{audit}"}}]
datasets:
  local:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
  office:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
"""


def test_fail_closed_writes_the_record_before_the_answer_leaves(
        tmp_path: Path, gateway_server: Callable[..., RunningGateway]) -> None:
    data = make_data_dir(tmp_path)
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "policy.yaml"
    config.write_text(FAIL_CLOSED.format(audit=audit, data=data))
    gw = gateway_server(config=config)
    response = httpx.get(f"{gw.url}/v1/datasets/local/objects/a.bin", headers={"X-Request-ID": "fc-1"})
    assert response.status_code == 302
    # On disk already when the client has the answer: confirmed before it started.
    assert [json.loads(line)["request_id"] for line in audit.read_text().splitlines()] == ["fc-1"]
    stream = httpx.get(response.headers["location"], headers={"X-Request-ID": "fc-2"})
    assert stream.status_code == 200 and stream.content == A_BIN
    second = json.loads(audit.read_text().splitlines()[1])
    assert (second["request_id"], second["status"], second["bytes"]) == ("fc-2", 200, len(A_BIN))  # as declared


def test_fail_closed_refuses_an_answer_whose_record_cannot_be_written(
        tmp_path: Path, gateway_server: Callable[..., RunningGateway]) -> None:
    data = make_data_dir(tmp_path)
    config = tmp_path / "policy.yaml"
    config.write_text(FAIL_CLOSED.format(audit="/dev/full", data=data))
    gw = gateway_server(config=config)
    response = httpx.get(f"{gw.url}/v1/datasets/local/objects/a.bin")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable" and "location" not in response.headers
    assert response.headers["x-request-id"] and response.headers["retry-after"]
    # A refusal leaks nothing, so it is answered as it is (its record is still attempted).
    assert httpx.get(f"{gw.url}/v1/datasets/office/objects/a.bin").status_code == 401
