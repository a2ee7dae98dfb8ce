"""Local-directory backend: the gateway signs its own URLs with HMAC and serves the files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from gateway.config import LocalBackend as LocalBackendConfig
from gateway.errors import Forbidden, NotFound
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

    def health(self) -> dict[str, object]:
        return {"kind": self.kind, "ok": os.path.isdir(self.root)}
