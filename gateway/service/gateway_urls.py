"""Gateway URLs for proxy datasets: what ``?format=json`` and ``POST /v1/sign`` hand out instead of
storage URLs, so that no storage URL ever leaves the gateway (invariant 10).

A URL is ``{public}/v1/datasets/{dataset}/objects/{key}?exp=&sig=``: an HMAC over the dataset, the
key, the expiry and the client address it was issued to. The signature is the credential when the
URL is used; it verifies only from that same address (as the gateway sees it, after trusted
proxies), so a leaked URL is useless elsewhere. Behind NAT every client sharing the address can
use it; a client whose address changes (mobile, IPv4/IPv6) must ask again. The address is not in
the URL. The key is derived from GATEWAY_SIGNING_KEY for this purpose only, so no local-disk URL
signature can ever verify as one of these.
"""

from __future__ import annotations

import base64
import hmac
import re

from gateway.errors import Forbidden
from gateway.models import DenyReason, SignedUrl
from gateway.routes import object_path

# The one form a gateway URL takes (see gateway.backends.local): no leading zeros, the signature as issued.
_EXP = re.compile(r"[1-9][0-9]{0,11}")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")


class GatewayUrls:
    def __init__(self, signing_key: bytes, base_url: str) -> None:
        self._key = hmac.digest(signing_key, b"gateway proxy URLs v1", "sha256")
        self._base = base_url.rstrip("/")

    def _mac(self, dataset: str, key: str, exp: int, client: str) -> str:
        message = f"proxy-v1\n{dataset}\n{key}\n{exp}\n{client}".encode()
        return base64.urlsafe_b64encode(hmac.digest(self._key, message, "sha256")).rstrip(b"=").decode("ascii")

    def sign(self, dataset: str, keys: list[str], client: str, *, signed_at: int, expires_in: int) -> list[SignedUrl]:
        """``client`` is the address as text; URLs are deterministic within one time bucket."""
        exp = signed_at + expires_in
        base = self._base
        return [SignedUrl(f"{base}{object_path(dataset, key)}?exp={exp}&sig={self._mac(dataset, key, exp, client)}",
                          exp, signed_at) for key in keys]

    def verify(self, dataset: str, key: str, client: str, *, exp: str, sig: str, now: float) -> int:
        """Raise Forbidden unless the URL was issued for this key, to this address, and has not
        expired; returns the expiry."""
        if not _EXP.fullmatch(exp) or not _SIG.fullmatch(sig):
            raise Forbidden("the URL signature is missing or malformed", reason=DenyReason.BAD_SIGNATURE)
        expected = self._mac(dataset, key, int(exp), client)
        # Constant time: the signature is the only secret-derived input.
        if not hmac.compare_digest(expected.encode(), sig.encode("ascii")):
            raise Forbidden("the URL signature does not match: it was altered, or issued to another address",
                            reason=DenyReason.BAD_SIGNATURE)
        if int(exp) < now:
            raise Forbidden("the URL has expired; ask the gateway for a new one", reason=DenyReason.EXPIRED)
        return int(exp)
