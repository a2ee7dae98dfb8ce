"""Audit: one record per decision, written off the request path, hash-chained per sink."""

from __future__ import annotations

from typing import Protocol


class AuditSink(Protocol):
    """Receives finished JSON lines (each ending in a newline). Called from the writer thread only."""

    name: str

    def write(self, lines: list[bytes]) -> None: ...

    def reopen(self) -> None:
        """Reopen the destination (after logrotate moved the file, on SIGHUP)."""
        ...

    def close(self) -> None: ...
