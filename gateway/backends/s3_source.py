"""S3 for ``delivery: proxy``: the object itself, read with SigV4 ``Authorization`` headers.

Credentials come from the dataset's S3 backend (boto3's chain, refreshed there); a fresh
signature is made for every read, so a long stream never depends on a URL's expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.backends import upstream
from gateway.backends.http_pool import UpstreamPool
from gateway.backends.s3 import S3Backend
from gateway.config.backends import trust_context
from gateway.keys import join_prefix
from gateway.models import Fetched, FetchRequest
from gateway.sigv4.headers import SigV4HeaderSigner


class S3Source:
    kind = "s3"

    def __init__(self, backend: S3Backend, pool: UpstreamPool, *, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.pool = pool
        self._clock = clock
        self._signer = SigV4HeaderSigner(backend.base_url, region=backend.config.region)
        self._trust = trust_context(backend.config.ca_bundle)  # built once: a context per read would cost ms

    async def fetch(self, key: str, request: FetchRequest) -> Fetched:
        path = join_prefix(self.backend.config.prefix, key)

        async def sign(method: str) -> dict[str, str]:
            _, credentials = await self.backend.credentials(bound=False)  # the gateway reads from its own network
            return self._signer.headers(method, path, credentials, now=int(self._clock()))

        return await upstream.fetch(self.pool, self._signer.url(path), sign, request, trust=self._trust)
