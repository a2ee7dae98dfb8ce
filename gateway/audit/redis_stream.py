"""Audit sink: a Redis stream (XADD with an approximate MAXLEN)."""

from __future__ import annotations

from gateway.redis_client import connect_sync


class RedisStreamSink:
    """Each record is one stream entry with a single ``record`` field holding the sealed JSON line.
    ``MAXLEN ~`` trims old entries cheaply; ship them elsewhere before they age out."""

    name = "redis_stream"

    def __init__(self, url: str, stream: str, maxlen: int) -> None:
        self.stream = stream
        self.maxlen = maxlen
        self._client = connect_sync(url)

    def write(self, lines: list[bytes]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(self.stream, {"record": line.rstrip(b"\n")}, maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def reopen(self) -> None:
        return None

    def close(self) -> None:
        self._client.close()
