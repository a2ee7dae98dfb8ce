"""Helpers for the end-to-end tests: a raw HTTP/1.1 client (bytes on the wire exactly as written),
policy files, a controllable clock, and the error-body contract."""

from __future__ import annotations

import json
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ERROR_KEYS = {"error", "detail", "request_id"}
LEAKS = ("Traceback", 'File "', "site-packages", "/gateway/")


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    sent: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeClock:
    """A clock the test moves by hand; the gateway reads it for signing and for expiry."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        line, _, rest = body.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


def raw_request(port: int, target: bytes, *, method: bytes = b"GET",
                headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"",
                content_length: int | None = None) -> RawResponse:
    """Send one request with ``target`` written verbatim on the request line (no normalization)."""
    lines = [method + b" " + target + b" HTTP/1.1"]
    if not any(name.lower() == b"host" for name, _ in headers or []):
        lines.append(b"Host: 127.0.0.1:" + str(port).encode())
    lines.append(b"Connection: close")
    for name, value in headers or []:
        lines.append(name + b": " + value)
    if content_length is not None or body or method == b"POST":
        lines.append(b"Content-Length: " + str(len(body) if content_length is None else content_length).encode())
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = _read_all(sock)
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = []
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.append((name.strip().lower(), value.strip()))
    if ("transfer-encoding", "chunked") in parsed:
        payload = _dechunk(payload)
    return RawResponse(int(status_line.split(" ")[1]), parsed, payload, request)


def assert_error(response: RawResponse | httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """The error contract: JSON with exactly error/detail/request_id, X-Request-ID equal to the
    body's request_id, and no stack trace or internals in the body."""
    if isinstance(response, httpx.Response):
        got_status, body, ctype, rid = (response.status_code, response.content,
                                        response.headers.get("content-type"), response.headers.get("x-request-id"))
    else:
        got_status, body, ctype, rid = (response.status, response.body, response.header("content-type"),
                                        response.header("x-request-id"))
    assert got_status == status, (got_status, body)
    assert ctype is not None and ctype.split(";")[0].strip() == "application/json", ctype
    text = body.decode("utf-8")
    for leak in LEAKS:
        assert leak not in text, text
    payload = json.loads(text)
    assert isinstance(payload, dict) and set(payload) == ERROR_KEYS, payload
    assert all(isinstance(v, str) and v for v in payload.values()), payload
    assert rid is not None and rid == payload["request_id"], (rid, payload)
    if code is not None:
        assert payload["error"] == code, payload
    return payload


def local_policy(path: Path, data_dir: Path, *, networks: list[str] | None = None, dataset: str = "local",
                 cors: list[str] | None = None, allow_keys: list[str] | None = None,
                 extra_datasets: str = "", batch_limit: int | None = None) -> Path:
    """Write a policy with one local dataset open to anonymous clients from ``networks``."""
    nets = networks or ["127.0.0.0/8"]
    lines = ["version: 1"]
    if batch_limit is not None:
        lines += ["defaults:", f"  batch_limit: {batch_limit}"]
    if cors:
        lines += ["cors:", f"  allow_origins: {json.dumps(cors)}"]
    lines += [
        "datasets:",
        f"  {dataset}:",
        f"    backend: {{kind: local, path: {json.dumps(str(data_dir))}}}",
        "    rules:",
        f"      - {{name: anon-net, anonymous: true, networks: {json.dumps(nets)}}}",
    ]
    if allow_keys is not None:
        lines.append(f"    allow_keys: {json.dumps(allow_keys)}")
    text = "\n".join(lines) + "\n" + extra_datasets
    path.write_text(text)
    return path


def png_2x2() -> bytes:
    """A valid 2x2 RGB PNG, built by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes([255, 0, 0, 0, 255, 0]) for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Parse Prometheus text into (name, labels, value) samples."""
    import re

    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)', line)
        assert match, line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples.append((match.group(1), labels, float(match.group(3))))
    return samples
