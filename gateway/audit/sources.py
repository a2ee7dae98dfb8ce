"""Where audit records are read back from: files (logrotate's ``.gz`` too) and a Redis stream.

Each source yields ``(source name, line number, line)`` one line at a time, so that verifying or
reporting on millions of records never holds more than one of them.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.audit.anchor import Anchors
from gateway.audit.verify import ChainVerifier, VerifyResult

Line = tuple[str, int, bytes]


class StreamReader(Protocol):
    """What reading a stream needs of a blocking Redis client (redis-py's ``xrange``)."""

    def xrange(self, name: str, min: str = "-", max: str = "+", count: int | None = None) -> Any: ...  # noqa: A002


@contextmanager
def _open(path: Path) -> Iterator[Iterable[bytes]]:
    if path.suffix == ".gz":  # logrotate's compress
        with gzip.open(path, "rb") as packed:
            yield packed
    else:
        with open(path, "rb") as plain:
            yield plain


def file_lines(paths: Sequence[Path]) -> Iterator[Line]:
    for path in paths:
        with _open(path) as fh:
            for number, line in enumerate(fh, start=1):
                yield str(path), number, line


def first_time(path: Path) -> float:
    """The time of a file's first record (-inf for an empty or unreadable first line)."""
    with _open(path) as fh:
        for line in fh:
            if line.strip():
                try:
                    value = orjson.loads(line).get("time")
                except (orjson.JSONDecodeError, AttributeError):
                    return float("-inf")
                return float(value) if isinstance(value, int | float) else float("-inf")
    return float("-inf")


def in_order(paths: Sequence[Path]) -> list[Path]:
    """Rotated files oldest first, by their first record: a shell glob's order (``audit.jsonl``,
    ``audit.jsonl.1``, ``audit.jsonl.10``, ``audit.jsonl.2``) is not the order they were written in."""
    return sorted(paths, key=first_time)


def stream_lines(client: StreamReader, stream: str, *, page: int = 1000) -> Iterator[Line]:
    """A Redis stream's entries, oldest first, a page at a time (each entry's ``record`` field)."""
    start, number = "-", 0
    while True:
        entries = client.xrange(stream, min=start, max="+", count=page)
        if not entries:
            return
        for entry_id, fields in entries:
            number += 1
            record = fields.get(b"record") if isinstance(fields, dict) else None
            yield f"{stream}@{_text(entry_id)}", number, record if isinstance(record, bytes) else b"{}"
        start = "(" + _text(entries[-1][0])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_anchors(lines: Iterable[Line], *, partial: bool = False) -> tuple[Anchors, VerifyResult]:
    """The checkpoints, each checkpoint destination's own chain verified as it is read (``partial``
    for a stream that ``MAXLEN`` trims)."""
    anchors = Anchors()
    verifier = ChainVerifier(partial=partial)
    for source, number, line in lines:
        record = verifier.check(line, source, number)
        if record is not None:
            anchors.add(record)
    return anchors, verifier.result()
