"""Local-disk reads: the file a local-disk URL names, once the admit step has checked the URL's own
signature (it is the credential: no other authentication applies)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.backends import FileSource
from gateway.service.admit import Gate
from gateway.service.context import RequestContext
from gateway.service.url_signature import UrlSignature


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A local-disk object the URL's signature admits, and how long a browser may cache it."""

    path: Path
    max_age: int
    etag_key: bytes


class LocalReads:
    def __init__(self, gate: Gate, *, clock: Callable[[], float] = time.time) -> None:
        self.gate = gate
        self.clock = clock

    async def read(self, ctx: RequestContext, dataset: str, raw_key: str | bytes, signature: UrlSignature) -> LocalFile:
        admitted = await self.gate.admit(ctx, dataset, raw_key, action="fetch", signature=signature)
        backend = ctx.state.backends[admitted.ds.name]
        assert isinstance(backend, FileSource) and admitted.key is not None  # noqa: S101 - the gate checked both
        path = backend.path(admitted.key)  # NotFound: audited as the 404 it is
        ctx.audit.streams = True
        expires = admitted.expires or 0
        return LocalFile(path, max(0, expires - int(self.clock())), backend.etag_key)
