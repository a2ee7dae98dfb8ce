"""GCS for ``delivery: proxy``: the object itself, read over the XML API with an OAuth access token.

The token comes from the dataset's Google credentials (a service-account key, or the ambient
credentials of GKE Workload Identity) and is refreshed off the event loop, one refresh at a time.
A V4 URL is never built, so a bucket that refuses signed URLs still serves the gateway.
"""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import quote

import google.auth.exceptions
from google.auth.transport.requests import Request

from gateway.backends import upstream
from gateway.backends.gcs import Credentials
from gateway.backends.gcs_v4 import DEFAULT_ENDPOINT
from gateway.backends.http_pool import UpstreamPool
from gateway.config import GcsBackend as GcsBackendConfig
from gateway.errors import Unavailable
from gateway.keys import join_prefix
from gateway.models import Fetched, FetchRequest


class GcsSource:
    kind = "gcs"

    def __init__(self, config: GcsBackendConfig, credentials: Credentials, pool: UpstreamPool, *,
                 timeout: float = 5.0) -> None:
        self.config = config
        self.credentials = credentials
        self.pool = pool
        self.timeout = timeout
        self._base = f"{(config.endpoint or DEFAULT_ENDPOINT).rstrip('/')}/{quote(config.bucket, safe='')}/"
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        with self._lock:  # concurrent requests wait for one refresh instead of each making one
            if not self.credentials.valid:
                self.credentials.refresh(Request())  # type: ignore[no-untyped-call]

    async def _token_headers(self, _: str) -> dict[str, str]:
        if not self.credentials.valid:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._refresh), self.timeout)
            except (google.auth.exceptions.GoogleAuthError, TimeoutError) as exc:
                raise Unavailable("could not obtain a Google access token to read GCS") from exc
        headers: dict[str, str] = {}
        self.credentials.apply(headers)  # type: ignore[no-untyped-call]
        return headers

    async def fetch(self, key: str, request: FetchRequest) -> Fetched:
        url = self._base + quote(join_prefix(self.config.prefix, key), safe="/~")
        return await upstream.fetch(self.pool, url, self._token_headers, request)
