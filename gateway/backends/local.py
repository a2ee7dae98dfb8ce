"""Local-directory backend: the gateway signs its own URLs with HMAC and serves the files."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

from gateway.backends import Listed, ListPage
from gateway.backends.listing import check_prefix, page_size
from gateway.config import LocalBackend as LocalBackendConfig
from gateway.errors import Forbidden, NotFound
from gateway.keys import MAX_KEY_BYTES
from gateway.media import content_type
from gateway.models import DenyReason, SignedUrl
from gateway.routes import local_prefix

# The one form a URL of this backend takes: an expiry without leading zeros, and the signature as
# issued (unpadded base64url of 32 bytes). Anything else is not a URL this gateway wrote.
_EXP = re.compile(r"[1-9][0-9]{0,11}")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class LocalBackend:
    """Signs ``/v1/local/{dataset}/{key}?exp=&sig=`` and resolves those URLs back to files."""

    kind = "local"
    shared_cache = False

    def __init__(self, config: LocalBackendConfig, *, dataset: str, base_url: str, signing_key: bytes) -> None:
        self.root = config.path
        self.dataset = dataset
        self._base = base_url.rstrip("/") + local_prefix(dataset)
        self._key = signing_key
        # Derived, never the signing key itself: ETags are shown to every client.
        self.etag_key = hmac.new(signing_key, b"gateway local-file etag v1", hashlib.sha256).digest()

    def _mac(self, key: str, exp: int) -> str:
        message = f"v1\n{self.dataset}\n{key}\n{exp}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    async def sign(self, keys: Sequence[str], *, signed_at: int, expires_in: int) -> list[SignedUrl]:
        exp = signed_at + expires_in
        return [
            SignedUrl(f"{self._base}{quote(key, safe='/')}?exp={exp}&sig={self._mac(key, exp)}", exp, signed_at)
            for key in keys
        ]

    def verify(self, key: str, *, exp: str, sig: str, now: float) -> int:
        """Raise Forbidden unless ``exp`` and ``sig`` are this backend's signature of ``key``, in its
        one canonical form, and not expired; returns the expiry."""
        if not _EXP.fullmatch(exp) or not _SIG.fullmatch(sig):
            raise Forbidden("the URL signature is missing or malformed", reason=DenyReason.BAD_SIGNATURE)
        # Constant-time comparison: the signature is the only secret-derived input.
        if not hmac.compare_digest(self._mac(key, int(exp)).encode(), sig.encode("ascii")):
            raise Forbidden("the URL signature does not match", reason=DenyReason.BAD_SIGNATURE)
        if int(exp) < now:
            raise Forbidden("the URL has expired; ask the gateway for a new one", reason=DenyReason.EXPIRED)
        return int(exp)

    def path(self, key: str) -> Path:
        """The file of a key whose URL was verified: its real path, never outside the root."""
        return self._safe_path(key)

    def _safe_path(self, key: str) -> Path:
        root = os.path.realpath(self.root)
        target = os.path.realpath(os.path.join(root, key))
        # realpath resolves every symlink, so a link pointing outside the root lands outside it.
        if os.path.commonpath([root, target]) != root:
            raise NotFound("no such object")
        try:
            mode = os.stat(target).st_mode
        except OSError:
            raise NotFound("no such object") from None
        if not stat.S_ISREG(mode):  # no directory listing, no devices or fifos
            raise NotFound("no such object")
        return Path(target)

    async def list_page(self, prefix: str, start: str | None, limit: int) -> ListPage:
        """The files under ``prefix`` in key order, after ``start`` (the last key of the previous
        page). The walk reads only the folders on its way (a page never restarts the whole tree),
        never descends into a linked folder (no loops), and lists a linked file only when it resolves
        inside the root, as :meth:`path` serves it."""
        check_prefix(prefix, MAX_KEY_BYTES)
        size = page_size(limit)
        found = await asyncio.to_thread(self._page, prefix, start or "", size + 1)
        objects = found[:size]
        return ListPage(objects, objects[-1].key if len(found) > size else None)

    def _page(self, prefix: str, start: str, count: int) -> list[Listed]:
        root = os.path.realpath(self.root)
        page: list[Listed] = []
        for key, real, st in _walk(root, "", prefix, start):
            page.append(Listed(key, st.st_size, file_etag(self.etag_key, real, st.st_size, st.st_mtime_ns),
                               content_type(key), st.st_mtime))
            if len(page) >= count:
                break
        return page

    def health(self) -> dict[str, object]:
        return {"kind": self.kind, "ok": os.path.isdir(self.root)}


def file_etag(key: bytes, path: str, size: int, mtime_ns: int) -> str:
    """The ETag the file route sends for this file (gateway/api/files.py ``entity_tag``, which the
    HTTP layer owns; tests/backends/test_local_listing.py holds the two equal)."""
    mac = hmac.new(key, f"{path}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape"), hashlib.sha256)
    return '"' + base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=").decode("ascii") + '"'


def _walk(root: str, folder: str, prefix: str, start: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(key, real path, stat) of the regular files below ``folder`` (relative, ending in ``/``), in
    key order: a folder sorts as its name plus ``/``, exactly where its keys sort among its siblings'
    (``a.txt`` < ``a/b`` < ``a0``). Folders that hold no key after ``start`` or under ``prefix`` are
    not opened."""
    try:
        with os.scandir(os.path.join(root, folder)) as entries:
            named = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in entries)
    except OSError:  # gone, or unreadable: nothing to list there
        return
    for name, entry in named:
        key = folder + name
        if name.endswith("/"):
            if (key.startswith(prefix) or prefix.startswith(key)) and (start < key or start.startswith(key)):
                yield from _walk(root, key, prefix, start)
        elif key > start and key.startswith(prefix):
            found = _regular_inside(root, entry)
            if found is not None:
                yield key, found[0], found[1]


def _regular_inside(root: str, entry: os.DirEntry[str]) -> tuple[str, os.stat_result] | None:
    try:
        if entry.is_symlink():
            real = os.path.realpath(entry.path)
            # A link is listed as the file it resolves to, and only when that file is inside the root.
            if os.path.commonpath([root, real]) != root:
                return None
            st = os.stat(real)
        else:
            real, st = entry.path, entry.stat(follow_symlinks=False)
    except (OSError, ValueError):
        return None
    return (real, st) if stat.S_ISREG(st.st_mode) else None
