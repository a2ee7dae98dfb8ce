"""A bug behind a FastAPI route is still the gateway's JSON 500, and a client that leaves before its
sign-out form arrives is counted as 499: never Starlette's plain text, never a stack trace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.types import Message

from gateway.api.context import read_body
from gateway.api.stack import build_http_app
from gateway.app.runtime import Runtime
from gateway.errors import ClientClosedRequest, PayloadTooLarge
from tests.core.conftest import local_policy


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], write_policy: Callable[..., Path], tmp_path: Path) -> Runtime:
    data = tmp_path / "data"
    data.mkdir()
    return make_runtime(write_policy(local_policy(data, tmp_path / "audit.jsonl")), registry=CollectorRegistry())


def test_a_bug_in_a_fastapi_route_is_json_500_with_the_request_id(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("secret-looking detail that must not reach the client")

    app = build_http_app(runtime.use, runtime.settings, metrics=runtime.metrics, readiness=broken)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/readyz")

    with caplog.at_level(logging.ERROR):
        response = asyncio.run(get())
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "internal_error" and body["request_id"] == response.headers["x-request-id"]
    assert "secret-looking" not in response.text and "Traceback" not in response.text
    assert any("unhandled error" in r.getMessage() for r in caplog.records)  # logged for the operator, once
    assert sum("unhandled error" in r.getMessage() for r in caplog.records) == 1


def test_a_client_that_leaves_before_its_sign_out_form_is_499(runtime: Runtime) -> None:
    """The form reader is the batch route's: a disconnect is the client's doing, not a 500."""
    async def gone() -> Message:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/v1/auth/logout", "headers": [], "query_string": b""}
    with pytest.raises(ClientClosedRequest) as info:
        asyncio.run(read_body(Request(scope, gone), 4096, "the sign-out form"))
    assert info.value.status == 499

    async def huge() -> Message:
        return {"type": "http.request", "body": b"x" * 5000, "more_body": False}

    with pytest.raises(PayloadTooLarge, match="the sign-out form is larger than 4096 bytes"):
        asyncio.run(read_body(Request(scope, huge), 4096, "the sign-out form"))
