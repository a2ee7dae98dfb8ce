"""One audit scope per request: the record is opened once, at the edge, filled in as the request is
admitted and answered, and written exactly once, when the answer is over, with the status that was
sent and the object bytes that went out (invariant 13).

Every way out of a request ends in :meth:`AuditScope.close`, called by the edge in a ``finally``:
an allowed answer, a refusal, an error, a client that left, a stream the storage broke off. No use
case writes a record itself, so none can forget one or write two.

Fail-closed sites (``audit.fail_closed``) must never send an answer whose record was not written:
there the edge calls :meth:`confirm` when the answer starts (before its first byte), with the status
and, for an object body, the length the answer declares. ``close`` then writes nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.audit.chain import encode_fields
from gateway.audit.log import AuditLog
from gateway.models import ANONYMOUS, AuditRecord, Decision, DenyReason, Principal

# The reason an answer was refused when no decision was taken (the request could not be read, the
# gateway failed): by the status that was sent.
_UNDECIDED = {400: DenyReason.BAD_REQUEST, 401: DenyReason.UNAUTHENTICATED, 408: DenyReason.BAD_REQUEST,
              413: DenyReason.BAD_REQUEST, 415: DenyReason.BAD_REQUEST, 429: DenyReason.RATE_LIMITED,
              499: DenyReason.CLIENT_CLOSED}


class AuditScope:
    """The record of one request in the making: plain attributes, set by the admit step and the use
    case (slots: one is built for every request)."""

    __slots__ = ("_clock", "_log", "_on_undecided", "_written", "action", "cache", "client", "dataset", "decision",
                 "denied", "key", "keys", "policy", "principal", "request_id", "started", "streams", "user_agent")

    def __init__(self, log: AuditLog | None, request_id: str, client: str, user_agent: str, action: str,
                 policy: str, *, clock: Callable[[], float] = time.time,
                 on_undecided: Callable[[DenyReason], None] | None = None) -> None:
        self._log = log
        self._clock = clock
        self._on_undecided = on_undecided
        self._written = False
        self.request_id = request_id
        self.client = client
        self.user_agent = user_agent
        self.action = action
        self.policy = policy
        self.started = time.perf_counter()
        self.dataset: str | None = None
        self.key: str | None = None
        self.keys: list[str] | None = None
        self.denied: int | None = None
        self.principal: Principal = ANONYMOUS
        self.decision: Decision | None = None
        self.cache: str | None = None
        self.streams = False  # the answer's body is the object's bytes: record how many went out

    @classmethod
    def detached(cls, request_id: str, client: str) -> AuditScope:
        """A scope that writes nowhere: offline evaluation (the CLI), where nothing was answered."""
        return cls(None, request_id, client, "", "offline", "")

    @property
    def written(self) -> bool:
        return self._written

    @property
    def fail_closed(self) -> bool:
        return self._log is not None and self._log.fail_closed

    def _decision(self, status: int) -> Decision:
        decision = self.decision
        if decision is None:
            # No decision was taken: the request was refused before it (or the gateway failed).
            reason = _UNDECIDED.get(status, DenyReason.ERROR if status >= 500 else DenyReason.BAD_REQUEST)
            decision = Decision(status < 400, reason=None if status < 400 else reason)
            if self._on_undecided is not None and not decision.allowed and reason is not None:
                self._on_undecided(reason)
        return decision

    def record(self, status: int, sent: int | None) -> AuditRecord:
        decision = self._decision(status)
        return AuditRecord(
            self._clock(), self.request_id, self.action, self.dataset, self.key,
            "allow" if decision.allowed else "deny", decision.rule, decision.reason, status, self.client,
            self.user_agent[:256], self.principal, self.cache, round((time.perf_counter() - self.started) * 1000, 3),
            self.keys, self.denied, sent if self.streams else None, self.policy or None,
        )

    def close(self, status: int, sent: int) -> None:
        """Write the record (once; later calls do nothing). Never blocks: the queue is bounded."""
        if self._written or self._log is None:
            return
        self._written = True
        decision = self._decision(status)
        # Encoded straight from the scope: every request does this, and an AuditRecord in between
        # would cost an object of eighteen fields more.
        self._log.emit_encoded(encode_fields(
            self._clock(), self.request_id, self.action, self.dataset, self.key,
            "allow" if decision.allowed else "deny", decision.rule, decision.reason, status, self.client,
            self.user_agent[:256], self.principal, self.cache, round((time.perf_counter() - self.started) * 1000, 3),
            self.keys, self.denied, sent if self.streams else None, self.policy or None))

    async def confirm(self, status: int, declared: int | None) -> None:
        """Fail-closed: write the record before the answer starts, or raise ``Unavailable`` (the
        record then stays unwritten: ``close`` tries once more with the status actually sent)."""
        if self._written or self._log is None:
            return
        await self._log.emit_confirmed(self.record(status, declared))
        self._written = True
