"""The pooled HTTP client that proxy delivery reads storage with: one per process, reused by every
request and every proxy dataset, closed at shutdown.

aiohttp was chosen by measurement (bench ``proxy`` row, docs/delivery.md): at 256 KB per object it
moved more requests per second per CPU than httpx's ``AsyncClient``, and its reader pauses the socket
once its buffer (``read_bufsize``, 64 KiB) is full, so a slow client slows the storage read instead
of filling memory. It is created on first use inside the running event loop (aiohttp requires
one), never at import.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp

READ_BUFFER = 64 * 1024  # per connection: the most one upstream response holds before it pauses the socket


class UpstreamPool:
    """One ``aiohttp.ClientSession`` per event loop (a uvicorn worker has one)."""

    def __init__(self, *, connect_timeout: float = 3.0, read_timeout: float = 30.0, limit: int = 512,
                 on_connect: Callable[[], None] | None = None) -> None:
        # No total deadline: a large object to a slow client may take minutes. sock_read bounds
        # each wait for the storage (the first byte included), connect the TCP and TLS setup.
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                             sock_read=read_timeout)
        self.limit = limit
        self._on_connect = on_connect
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary())

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            traces = []
            if self._on_connect is not None:
                trace = aiohttp.TraceConfig()
                on_connect = self._on_connect

                async def opened(_: aiohttp.ClientSession, __: SimpleNamespace, ___: object) -> None:
                    on_connect()

                trace.on_connection_create_end.append(opened)
                traces.append(trace)
            connector = aiohttp.TCPConnector(limit=self.limit, limit_per_host=0, ttl_dns_cache=60,
                                             keepalive_timeout=15)
            session = self._sessions[loop] = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, trace_configs=traces, auto_decompress=False,
                read_bufsize=READ_BUFFER, skip_auto_headers=("Accept-Encoding",), cookie_jar=aiohttp.DummyCookieJar(),
            )
        return session

    async def aclose(self) -> None:
        """Close this loop's session (the runtime's shutdown)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a coroutine
            return
        session = self._sessions.pop(loop, None)
        if session is not None and not session.closed:
            await session.close()
