"""Serving one local file: streamed, with Range, ETag, Last-Modified and 304."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import anyio.to_thread
from starlette.responses import Response, StreamingResponse

from gateway.errors import NotFound, RangeNotSatisfiable
from gateway.media import content_type

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (start, end inclusive); None means serve the whole file.

    Malformed or multi-part ranges are ignored (RFC 9110 lets a server do so); a well-formed
    range that starts past the end is unsatisfiable.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable("the range is empty", size=size)
        if size == 0:
            return None  # RFC 9110: a suffix range of an empty representation is served whole (empty)
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"the range starts past the end of the {size}-byte object", size=size)
    return start, min(end, size - 1)


def _not_modified(headers: Mapping[str, str], etag: str, mtime: int) -> bool:
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since:
        try:
            return int(parsedate_to_datetime(since).timestamp()) >= mtime
        except (TypeError, ValueError, OverflowError):
            return False
    return False


async def _stream(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        offset, remaining = start, length
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK, remaining), offset)
            if not chunk:
                break
            offset += len(chunk)
            remaining -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


def entity_tag(key: bytes, path: Path, size: int, mtime_ns: int) -> str:
    """A strong ETag from the file's size and mtime, keyed: it changes when the file does, and tells
    nothing about the file system (an inode number would)."""
    mac = hmac.new(key, f"{path}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape"), hashlib.sha256)
    return '"' + base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=").decode("ascii") + '"'


def file_response(path: Path, method: str, headers: Mapping[str, str], max_age: int, *, etag_key: bytes,
                  private: bool = False) -> Response:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        raise NotFound("no such object") from None
    try:
        st = os.fstat(fd)
        size, mtime = st.st_size, int(st.st_mtime)
        etag = entity_tag(etag_key, path, size, st.st_mtime_ns)
        base = {
            "ETag": etag,
            "Last-Modified": formatdate(mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, no-store" if private else f"private, max-age={max_age}",
            # Files from the data folder must never run script on the gateway's origin.
            "Content-Security-Policy": "default-src 'none'; sandbox",
        }
        if _not_modified(headers, etag, mtime):
            os.close(fd)
            return Response(status_code=304, headers=base)
        byte_range = _range(headers.get("range"), size)
        if_range = headers.get("if-range")
        if byte_range is not None and if_range is not None and if_range not in (etag, base["Last-Modified"]):
            byte_range = None
        status, start, end = (206, *byte_range) if byte_range else (200, 0, size - 1)
        length = max(0, end - start + 1)
        base["Content-Length"] = str(length)
        if status == 206:
            base["Content-Range"] = f"bytes {start}-{end}/{size}"
    except BaseException:
        os.close(fd)
        raise
    if method == "HEAD":
        os.close(fd)
        return Response(status_code=status, headers=base, media_type=content_type(path))
    return StreamingResponse(_stream(fd, start, length), status_code=status, headers=base,
                             media_type=content_type(path))
