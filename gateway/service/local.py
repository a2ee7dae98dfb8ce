"""Local-disk reads: the file a local-disk URL names, once the admit step has checked the URL's own
signature (it is the credential: no other authentication applies)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.backends import FileSource
from gateway.errors import NotFound
from gateway.models import AuthMethod
from gateway.service.admit import Gate
from gateway.service.context import RequestContext
from gateway.service.url_signature import UrlSignature


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A local-disk object the URL's signature admits, and how long a browser may cache it."""

    path: Path
    max_age: int
    etag_key: bytes
    private: bool = False  # read with a browser session or its capability: never stored


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

    async def serve(self, ctx: RequestContext, dataset: str, raw_key: str | bytes, *,
                    capability: str | None = None) -> LocalFile:
        """The file of an object route (delivery: auto, for a page that can read it), admitted by
        the request's credential like a redirect."""
        admitted = await self.gate.admit(ctx, dataset, raw_key, action="fetch", capability=capability)
        backend = ctx.state.backends[admitted.ds.name]
        if not isinstance(backend, FileSource) or admitted.key is None:
            raise NotFound("this dataset's objects are not files of this gateway")
        path = backend.path(admitted.key)
        ctx.audit.streams = True
        private = admitted.principal.method in (AuthMethod.BROWSER_SESSION, AuthMethod.CAPABILITY)
        return LocalFile(path, admitted.ds.bucket, backend.etag_key, private)
