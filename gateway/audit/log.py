"""The audit queue: the request path enqueues, one writer thread seals and writes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from gateway.audit import AuditSink
from gateway.audit.chain import Chain
from gateway.errors import Unavailable
from gateway.models import AuditRecord

log = logging.getLogger("gateway.audit")
_STOP = object()
_FIELDS = tuple(f.name for f in fields(AuditRecord))


class AuditLog:
    """A bounded queue in front of the sinks.

    ``emit`` never blocks: a full queue drops the record and counts it. In ``fail_closed`` mode,
    ``emit_confirmed`` waits until every sink has written the record and raises ``Unavailable``
    otherwise, so that regulated sites never serve a request that left no trace.
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink],
        *,
        max_queue: int = 10_000,
        fail_closed: bool = False,
        on_drop: Callable[[], None] = lambda: None,
        write_timeout: float = 2.0,
    ) -> None:
        self.sinks = list(sinks)
        self.fail_closed = fail_closed
        self.write_timeout = write_timeout
        self._on_drop = on_drop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        chain_prefix = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._chains = [Chain(f"{chain_prefix}:{sink.name}") for sink in self.sinks]
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def emit(self, record: AuditRecord) -> None:
        try:
            self._queue.put_nowait((record, None))
        except queue.Full:
            self._on_drop()

    async def emit_confirmed(self, record: AuditRecord) -> None:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            self._queue.put_nowait((record, future))
        except queue.Full:
            self._on_drop()
            raise Unavailable("the audit log cannot accept records; refusing (fail-closed)") from None
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), self.write_timeout)
        except Exception as exc:
            self._on_drop()
            raise Unavailable("the audit log could not write the record; refusing (fail-closed)") from exc

    async def record(self, record: AuditRecord) -> None:
        if self.fail_closed:
            await self.emit_confirmed(record)
        else:
            self.emit(record)

    def reopen(self) -> None:
        self._queue.put(("reopen", None))

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)
        for sink in self.sinks:
            try:
                sink.close()
            except OSError:
                log.warning("audit sink %s did not close cleanly", sink.name)

    def _drain(self, first: object) -> list[Any]:
        items = [first]
        while len(items) < 512:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self) -> None:
        while True:
            items = self._drain(self._queue.get())
            stop = any(item is _STOP for item in items)
            batch = [item for item in items if item is not _STOP]
            if any(item[0] == "reopen" for item in batch):
                for sink in self.sinks:
                    sink.reopen()
                batch = [item for item in batch if item[0] != "reopen"]
            if batch:
                self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[AuditRecord, concurrent.futures.Future[None] | None]]) -> None:
        error: BaseException | None = None
        # Converted here, in the writer thread: the request path only enqueues the record object.
        records = [{name: getattr(record, name) for name in _FIELDS} for record, _ in batch]
        for sink, chain in zip(self.sinks, self._chains, strict=True):
            saved = (chain.seq, chain.prev_hash)
            lines = [chain.seal(record) for record in records]
            try:
                sink.write(lines)
            except Exception as exc:  # a sink failure must not kill the writer
                chain.seq, chain.prev_hash = saved  # unwritten records must not leave a gap
                error = exc
                for _ in batch:
                    self._on_drop()
                log.error("audit sink %s failed: %s", sink.name, type(exc).__name__)
        for _, future in batch:
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(Unavailable("audit sink failed"))
