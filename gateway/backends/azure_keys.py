"""User delegation keys: what an Entra identity signs Azure SAS with, instead of an account key.

A key is asked for with ``get_user_delegation_key`` (the identity needs ``Storage Blob Delegator``)
and is valid from ``skt`` to ``ske``; a SAS signed with it stops working at ``ske``. Keys are asked
for on a fixed grid: the start is the last multiple of half the life, the expiry one life later, so
that every replica asks for the same ``skt``/``ske`` (both are signed into every URL, so replicas that
asked at different moments could never hand out equal URLs), and a key is replaced once half its
life has passed, while it still outlives any URL signed with it by half a life.

When the storage refuses or cannot be reached, a key that is still valid keeps signing; without one
the answer is 503, and the storage is asked again at most every :data:`RETRY_AFTER` seconds, so an
outage is not multiplied by the request rate. The key's value is secret: never logged, never shown.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.backends.azure_sas import DelegationKey
from gateway.errors import Unavailable

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

log = logging.getLogger("gateway.backends")
RETRY_AFTER = 5.0
MARGIN = 30  # seconds a key must still live to sign with it (URLs are capped the same way)


def _timestamp(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def _key(answer: object) -> DelegationKey:
    """Our frozen copy of the SDK's ``UserDelegationKey`` (every field is checked to be text)."""
    fields = [getattr(answer, name, None) for name in ("signed_oid", "signed_tid", "signed_start", "signed_expiry",
                                                      "signed_service", "signed_version", "value")]
    if not all(isinstance(value, str) and value for value in fields):
        raise ValueError("the user delegation key is incomplete")
    oid, tid, start, expiry, service, version, value = (str(v) for v in fields)
    delegated = getattr(answer, "signed_delegated_user_tid", None)
    return DelegationKey(oid, tid, start, expiry, service, version, value, _timestamp(expiry),
                         delegated if isinstance(delegated, str) and delegated else None)


class DelegationKeys:
    """The current user delegation key of one storage account, for one dataset's signer."""

    def __init__(self, service: BlobServiceClient, *, life: float, clock: Callable[[], float] = time.time,
                 timeout: float = 8.0) -> None:
        self.service = service
        self.life = int(life)
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._key: DelegationKey | None = None
        self._refresh_at = 0.0
        self._retry_at = 0.0
        self.fetched = 0  # keys obtained
        self.failures = 0

    def _usable(self, key: DelegationKey | None) -> bool:
        return key is not None and self._clock() < key.expires_at - MARGIN - 1

    async def current(self) -> DelegationKey:
        """A key with at least MARGIN seconds left; raises Unavailable."""
        key = self._key
        if key is not None and self._clock() < self._refresh_at:
            return key
        try:
            # A network call to the storage (and maybe to Entra for a token): off the event loop.
            return await asyncio.wait_for(asyncio.to_thread(self._refresh), self.timeout)
        except TimeoutError as exc:
            if self._usable(self._key) and self._key is not None:
                return self._key
            raise Unavailable("no user delegation key from Azure Storage in time; retry shortly",
                              retry_after=int(RETRY_AFTER)) from exc

    def _window(self, now: float) -> tuple[int, int]:
        half = self.life // 2
        start = int(now) // half * half
        return start, start + self.life

    def _refresh(self) -> DelegationKey:
        with self._lock:  # one request at a time; the others find its result
            key, now = self._key, self._clock()
            if key is not None and now < self._refresh_at:
                return key
            if now < self._retry_at:
                if key is not None and self._usable(key):
                    return key
                raise Unavailable("no user delegation key for Azure Storage (the last request failed); retry shortly",
                                  retry_after=int(RETRY_AFTER))
            start, expiry = self._window(now)
            try:
                answer = self.service.get_user_delegation_key(
                    datetime.datetime.fromtimestamp(start, datetime.UTC),
                    datetime.datetime.fromtimestamp(expiry, datetime.UTC), timeout=int(self.timeout))
                fresh = _key(answer)
            except Exception as exc:  # azure-core, azure-identity, the network, a malformed answer: all alike
                self.failures += 1
                self._retry_at = now + RETRY_AFTER
                # The exception's text can name the account, the tenant or the identity: only its type is logged.
                log.warning("get_user_delegation_key failed (%s)", type(exc).__name__)
                if key is not None and self._usable(key):
                    return key
                raise Unavailable("no user delegation key could be obtained from Azure Storage; retry shortly",
                                  retry_after=int(RETRY_AFTER)) from exc
            self.fetched += 1
            self._key = fresh
            # Replace it at the next grid line: half its life, or earlier if the storage shortened it.
            self._refresh_at = min(start + self.life // 2, now + (fresh.expires_at - now) / 2)
            return fresh

    def health(self) -> dict[str, object]:
        key = self._key
        info: dict[str, object] = {"ok": self._usable(key) or self.failures == 0,
                                   "delegation_key_failures": self.failures}
        if key is not None:
            info["delegation_key_expires_in"] = int(key.expires_at - self._clock())
        return info
