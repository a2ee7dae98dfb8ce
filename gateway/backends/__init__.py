"""Storage backends behind one Protocol. The composition root picks one per dataset by ``kind``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from gateway.models import Fetched, FetchRequest, SignedUrl

# The object's own headers, which a client of a proxy dataset may see: every other header of the
# storage's answer (request ids, server names, x-amz-*/x-goog-*, cookies) is dropped, so that nothing
# of the storage reaches a client (invariant 10). The one list for the sources and the HTTP layer.
OBJECT_HEADERS: tuple[str, ...] = (
    "content-type",  # what the bytes are; a dataset's response_content_type overrides it
    "content-disposition",  # inline or download, and the file name; a dataset's override wins
    "content-length",  # the body's size: progress for the client, and how a truncated body is caught
    "content-range",  # which bytes a 206 holds, and the object's whole size
    "content-encoding",  # the bytes are passed as stored, never decoded: the client must decode them
    "content-language",  # the object's own metadata, as the uploader set it
    "etag",  # the validator the storage answers If-None-Match with, and If-Range is compared to
    "last-modified",  # the validator for If-Modified-Since, and for If-Range given a date
)


@runtime_checkable
class Backend(Protocol):
    """Turns canonical object keys into presigned URLs.

    ``keys`` are relative to the dataset; the backend joins its own prefix. Signing is
    deterministic: equal ``keys``, ``signed_at`` and ``expires_in`` give equal URLs, so that
    replicas agree and browsers can cache. A backend may shorten ``expires_in`` (for example to
    the remaining life of temporary credentials); the returned ``expires_at`` is the truth.
    Signing never looks an object up. Unreachable dependencies raise ``Unavailable``.
    """

    kind: str
    # True when signing costs more than a Redis round trip (RSA, IAM signBlob): worth sharing.
    shared_cache: bool

    async def sign(self, keys: Sequence[str], *, signed_at: int, expires_in: int) -> list[SignedUrl]: ...

    def health(self) -> dict[str, object]:
        """Readiness details without touching the network (credentials present, not expired)."""
        ...


@runtime_checkable
class FileSource(Protocol):
    """A backend that serves bytes itself (local disk), behind its own URL signature."""

    etag_key: bytes  # keys the files' ETags, so that they reveal nothing about the file system

    def verify(self, key: str, *, exp: str, sig: str, now: float) -> int:
        """Check the URL's own signature (it is the credential); returns its expiry. Raises
        Forbidden (reason ``bad_signature`` or ``expired``)."""
        ...

    def path(self, key: str) -> Path:
        """The file's real path, never outside the root; NotFound otherwise."""
        ...


@runtime_checkable
class ObjectSource(Protocol):
    """Reads objects for ``delivery: proxy``: the gateway fetches and streams them itself.

    Requests are authenticated with headers (SigV4 ``Authorization``, an OAuth bearer token), never
    with a query-string URL, so a bucket policy may deny query-string authentication outright.
    Only the request's ``Range`` and conditionals are forwarded, never the client's headers.
    Answers are 200, 206 or 304; everything else is raised: ``NotFound`` (no such object),
    ``RangeNotSatisfiable`` (with the object's size), ``BadGateway`` (the storage refused the
    gateway's credentials), ``GatewayTimeout`` and ``Unavailable`` (unreachable, or failing).
    The storage's own error bodies and headers never reach the caller.
    """

    kind: str

    async def fetch(self, key: str, request: FetchRequest) -> Fetched:
        """``key`` is relative to the dataset (the source joins its prefix)."""
        ...


@dataclass(frozen=True, slots=True)
class Listed:
    """One object of a listing: its key relative to the dataset, and what the storage says of it."""

    key: str
    size: int | None = None
    etag: str | None = None
    content_type: str | None = None  # None where the listing does not tell it (S3, Azure): from the key's suffix
    modified: float | None = None  # Unix seconds


@dataclass(frozen=True, slots=True)
class ListPage:
    """At most ``limit`` objects in key order, and the storage's own continuation (None: the end)."""

    objects: list[Listed]
    next_token: str | None = None


@runtime_checkable
class Lister(Protocol):
    """Lists a dataset's objects under a prefix, one bounded page at a time, whatever the bucket's size.

    ``prefix`` is relative to the dataset (the backend joins its own prefix, and lists nothing outside
    it); ``start`` is a previous page's ``next_token`` as the storage gave it (the caller makes it
    opaque and tamper-proof); ``limit`` bounds the page (at most 1000). Folder markers (keys ending in
    ``/``) are not objects. Failures are the gateway's errors (``Unavailable``, ``BadGateway``), with
    nothing of the storage in their detail.
    """

    async def list_page(self, prefix: str, start: str | None, limit: int) -> ListPage: ...
