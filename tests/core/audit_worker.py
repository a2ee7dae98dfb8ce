"""A worker process for the multi-process audit test. Kept apart so that a spawned child imports
only the audit modules, not the whole app (which would cost seconds per process)."""

from __future__ import annotations

from pathlib import Path

from gateway.audit.log import AuditLog
from gateway.audit.sinks import FileSink
from gateway.models import AuditRecord


def write_records(path: str, worker: int, count: int) -> None:
    log = AuditLog([FileSink(Path(path))], max_queue=count + 1)
    for i in range(count):
        log.emit(AuditRecord(time=1_700_000_000.0 + i, request_id=f"w{worker}-{i}", action="redirect",
                             dataset="d", key=f"images/{i}.png", decision="allow", rule="r", reason=None,
                             status=302, client_ip="127.0.0.1", user_agent="x" * (i % 50)))
    log.close(timeout=30)
