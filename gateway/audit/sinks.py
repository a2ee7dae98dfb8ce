"""Audit sinks: stdout and an append-only file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16)


class StdoutSink:
    name = "stdout"

    def write(self, lines: list[bytes]) -> None:
        sys.stdout.buffer.write(b"".join(lines))
        sys.stdout.buffer.flush()

    def reopen(self) -> None:
        return None

    def close(self) -> None:
        sys.stdout.flush()


class FileSink:
    """Appends with O_APPEND and one write() per batch of whole lines, so that several workers
    appending to the same file never tear each other's lines."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = self._open()

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, lines: list[bytes]) -> None:
        # writev: no joined copy of the batch (a megabyte per flush under load, which kept the
        # process's memory growing for a while); O_APPEND makes it one append, like write().
        for start in range(0, len(lines), _IOV_MAX):
            chunk = lines[start:start + _IOV_MAX]
            written = os.writev(self._fd, chunk)
            total = sum(map(len, chunk))
            if written < total:  # rare (a full disk, a signal): finish with plain writes
                rest = b"".join(chunk)[written:]
                while rest:
                    rest = rest[os.write(self._fd, rest):]

    def reopen(self) -> None:
        old, self._fd = self._fd, self._open()
        os.close(old)

    def close(self) -> None:
        # Idempotent: closing a descriptor twice could close whatever reused its number since.
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
