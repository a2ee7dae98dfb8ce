"""The scan every proxy test runs on every answer: nothing of the storage may reach a client."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from tests.delivery.conftest import BUCKET, PREFIX


def storage_marks(endpoint: str) -> list[str]:
    host_port = endpoint.split("//", 1)[1]
    port = host_port.rsplit(":", 1)[1]
    return [host_port.lower(), f":{port}", BUCKET, PREFIX.rstrip("/"), "x-amz", "x-goog", "amz-", "goog4",
            "s3rver", "signature=", "credential=", "security-token"]


def assert_no_leak(response: httpx.Response, endpoint: str, *, extra: Iterable[str] = ()) -> None:
    """Headers always; the body when it is the gateway's own (JSON), not the object's bytes."""
    marks = storage_marks(endpoint) + list(extra)
    head = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items()).lower()
    texts = [head]
    if response.headers.get("content-type", "").startswith("application/json"):
        texts.append(response.text.lower())
    for text in texts:
        for mark in marks:
            assert mark.lower() not in text, (mark, text[:2000])
