"""Azure Blob Storage for ``delivery: proxy``: the blob itself, read with header authentication.

The dataset's backend authenticates every read: ``SharedKey`` with an account key, or an Entra access
token (workload or managed identity). No SAS is ever made for a proxied read, so a storage account that
forbids SAS (``allowSharedKeyAccess: false`` leaves only Entra tokens) still serves the gateway, and no
storage host, account or signature reaches a client (the storage's answer is filtered by upstream.fetch).
"""

from __future__ import annotations

from gateway.backends import upstream
from gateway.backends.azure import AzureBackend
from gateway.backends.http_pool import UpstreamPool
from gateway.models import Fetched, FetchRequest


class AzureSource:
    kind = "azure"

    def __init__(self, backend: AzureBackend, pool: UpstreamPool) -> None:
        self.backend = backend
        self.pool = pool

    async def fetch(self, key: str, request: FetchRequest) -> Fetched:
        url = self.backend.blob_url(key)
        sent = upstream.forwarded(request)
        asked = "HEAD" if request.head else "GET"

        async def sign(method: str) -> dict[str, str]:
            # SharedKey signs Range and the conditionals, so the signature must cover exactly what is sent:
            # upstream.fetch sends them with the request it was given, and nothing with the one HEAD it makes
            # on its own (the object's size after a 416).
            return await self.backend.read_headers(method, url, sent if method == asked else {})

        return await upstream.fetch(self.pool, url, sign, request)
