"""Factory fixtures for the core tests: a settable clock, policy files, runtimes built like production."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.app.runtime import Runtime
from gateway.settings import Settings

SIGNING_KEY = "core-tests-signing-key-0123456789abcdef"
PUBLIC_URL = "https://gw.example.test"


class Clock:
    """A clock the test sets by hand; the runtime reads it instead of time.time."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``write_policy(yaml_text, name="policy.yaml")`` writes a dedented policy file."""

    def write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def local_policy(data_dir: Path, audit_file: Path, *, url_ttl: str = "120s", min_remaining: float = 0.5,
                 batch_limit: int = 1000, allow_keys: str = '["**"]') -> str:
    """A local-disk dataset ``local`` readable by anonymous clients on loopback, audited to a file."""
    return f"""\
        version: 1
        defaults: {{url_ttl: 300s, max_url_ttl: 1h, min_remaining: {min_remaining}, batch_limit: {batch_limit}}}
        audit:
          sinks: [{{kind: file, path: "{audit_file}"}}]
        datasets:
          local:
            backend: {{kind: local, path: "{data_dir}"}}
            url_ttl: {url_ttl}
            allow_keys: {allow_keys}
            rules:
              - {{name: loopback, anonymous: true, networks: [127.0.0.0/8, "::1/128"]}}
        """


@pytest.fixture
def make_runtime() -> Iterator[Callable[..., Runtime]]:
    """Factory: ``make_runtime(config=path, clock=clock)`` builds a Runtime; closed after the test."""
    runtimes: list[Runtime] = []

    def make(config: Path | None = None, *, clock: Callable[[], float] | None = None,
             registry: CollectorRegistry | None = None, **settings: Any) -> Runtime:
        settings.setdefault("signing_key", SIGNING_KEY)
        settings.setdefault("public_url", PUBLIC_URL)
        kwargs: dict[str, Any] = {"registry": registry}
        if clock is not None:
            kwargs["clock"] = clock
        runtime = Runtime(Settings(config=config, **settings), **kwargs)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        asyncio.run(runtime.aclose())
