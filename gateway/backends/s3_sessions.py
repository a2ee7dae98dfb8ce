"""Network-bound S3 credentials: one ``sts:AssumeRole`` session per dataset, with an inline session
policy that lets S3 serve the dataset's prefix only to the configured networks.

S3 checks a presigned URL against the permissions of the session that signed it when the URL is
*used*; the session policy (gateway/config/session_policy.py) allows ``s3:GetObject`` only from the
configured source addresses or VPC endpoints, so a leaked URL fails anywhere else.

The session is refreshed once half its life has passed. When STS fails, a session that is still
valid keeps signing (it is just as bound); without one the answer is 503, never an URL signed with
the gateway's own, unbound credentials. After a failure STS is asked again at most every
:data:`RETRY_AFTER` seconds, so an STS outage is not multiplied by the request rate.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import boto3
from botocore.config import Config

from gateway.config import NetworkBinding
from gateway.errors import Unavailable
from gateway.sigv4.presign import Credentials

log = logging.getLogger("gateway.backends")
RETRY_AFTER = 5.0
MARGIN = 30  # seconds a session must still live to sign with it (the backend caps URLs the same way)


@dataclass(frozen=True, slots=True)
class _Session:
    credentials: Credentials
    expires: float  # Unix seconds
    refresh_at: float


class BoundSessions:
    """The STS session of one dataset. ``policy`` is the minified session policy from the config."""

    def __init__(self, session: boto3.session.Session, binding: NetworkBinding, policy: str, *, dataset: str,
                 region: str, clock: Callable[[], float] = time.time) -> None:
        self.binding = binding
        self.policy = policy
        self._name = f"gateway-{dataset}"[:64]
        self._clock = clock
        # AWS_ENDPOINT_URL_STS (boto3's own setting) points this at another STS, e.g. in tests.
        self._sts = session.client("sts", region_name=region, config=Config(
            connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}))
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._retry_at = 0.0
        self.assumed = 0  # AssumeRole calls that succeeded
        self.failures = 0

    async def current(self) -> tuple[float, Credentials]:
        """(expiry, credentials) of a session with at least MARGIN seconds left; raises Unavailable."""
        session = self._session
        if session is not None and self._clock() < session.refresh_at:
            return session.expires, session.credentials
        session = await asyncio.to_thread(self._refresh)  # an STS call: off the event loop
        return session.expires, session.credentials

    def _usable(self, session: _Session | None) -> bool:
        return session is not None and self._clock() < session.expires - MARGIN - 1

    def _refresh(self) -> _Session:
        with self._lock:  # one AssumeRole at a time; the others find its result
            session = self._session
            now = self._clock()
            if session is not None and now < session.refresh_at:
                return session
            if now < self._retry_at:
                if session is not None and self._usable(session):
                    return session
                raise Unavailable("the network-bound S3 session is unavailable (STS failed); retry shortly")
            try:
                answer = self._sts.assume_role(RoleArn=self.binding.role_arn, RoleSessionName=self._name,
                                               Policy=self.policy, DurationSeconds=int(self.binding.duration))
                raw = answer["Credentials"]
                credentials = Credentials(raw["AccessKeyId"], raw["SecretAccessKey"], raw["SessionToken"])
                expires = raw["Expiration"].timestamp()
            except Exception as exc:  # botocore, the network, a malformed answer: all the same here
                self.failures += 1
                self._retry_at = now + RETRY_AFTER
                # The exception text can name the role and the account: only its type is logged.
                log.warning("STS AssumeRole for %s failed (%s)", self._name, type(exc).__name__)
                if session is not None and self._usable(session):
                    return session
                raise Unavailable("the network-bound S3 session could not be obtained from STS; retry shortly",
                                  retry_after=int(RETRY_AFTER)) from exc
            self.assumed += 1
            self._session = _Session(credentials, expires, now + (expires - now) / 2)
            return self._session

    def health(self) -> dict[str, object]:
        session = self._session
        # Not ready once STS has failed and no session can sign: every URL would be a 503.
        ok = self._usable(session) or self.failures == 0
        info: dict[str, object] = {"ok": ok, "network_binding": True, "sts_failures": self.failures}
        if session is not None:
            info["session_expires_in"] = int(session.expires - self._clock())
        return info
