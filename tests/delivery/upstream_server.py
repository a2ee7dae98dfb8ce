"""A storage stand-in on a loopback socket that answers with raw bytes, and records what reaches it.

It sends what no S3-compatible server can be made to send (a 416 to a HEAD, header bytes that are
no UTF-8, a control character in a header, an answer broken off or stalled mid-body), so that the
gateway's side of each can be tested against a real socket and aiohttp's real parser.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Reply:
    """The raw bytes of one answer, and what the connection does after them."""

    data: bytes
    then: Literal["keep", "close", "hang"] = "keep"  # hang: hold the connection open and send nothing more


def reply(status: int, *headers: bytes, body: bytes = b"", length: int | None = None,
          then: Literal["keep", "close", "hang"] = "keep") -> Reply:
    """An answer with these raw header lines; Content-Length is ``length`` or the body's (HEAD: give it)."""
    lines = [b"HTTP/1.1 %d X" % status, b"Content-Length: %d" % (len(body) if length is None else length),
             *headers]
    return Reply(b"\r\n".join(lines) + b"\r\n\r\n" + body, then)


@dataclass
class Request:
    method: str
    headers: dict[str, str]  # lower-case names
    path: str = ""  # the request target, as sent


@dataclass
class RawStorage:
    url: str
    requests: list[Request] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return [request.method for request in self.requests]


Answer = Callable[[Request], Reply]


def _read_request(conn: socket.socket, buffer: bytearray) -> Request | None:
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest  # GET and HEAD carry no body
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    method, _, rest = line.partition(" ")
    return Request(method, headers, rest.rpartition(" ")[0])


@contextmanager
def raw_storage(answer: Answer) -> Iterator[RawStorage]:
    """Serves ``answer(request)`` to every request (keep-alive), each connection in its own thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    storage = RawStorage(f"http://127.0.0.1:{listener.getsockname()[1]}/bucket-zq7/object")
    stop = threading.Event()
    conns: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        buffer = bytearray()
        try:
            while not stop.is_set():
                request = _read_request(conn, buffer)
                if request is None:
                    return
                storage.requests.append(request)
                answer_ = answer(request)
                conn.sendall(answer_.data)
                if answer_.then == "close":
                    return
                if answer_.then == "hang":
                    stop.wait()
                    return
        except OSError:
            return
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conns.append(conn)
            thread = threading.Thread(target=serve, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield storage
    finally:
        stop.set()
        acceptor.join(2)
        listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a serve() blocked in recv
            except OSError:
                pass
        for thread in threads:
            thread.join(2)
