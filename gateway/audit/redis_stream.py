"""Audit sink: a Redis stream (XADD with an approximate MAXLEN)."""

from __future__ import annotations

from gateway.redis.client import SharedRedis, SyncClient


class RedisStreamSink:
    """Each record is one stream entry with a single ``record`` field holding the sealed JSON line.
    ``MAXLEN ~`` trims old entries cheaply; ship them elsewhere before they age out.

    The writer thread has a blocking client of its own, made on first use (a Cluster client
    connects when it is made, and startup must not wait on it), with the shared Redis's TLS and
    credentials. On Cluster the stream is one key, so one shard holds all of it. After a Sentinel
    failover the listener bumps ``master_generation`` and the next batch drops the old master's
    connections first, so records are not written to a master that is about to be demoted.
    """

    name = "redis_stream"

    def __init__(self, shared: SharedRedis, stream: str, maxlen: int) -> None:
        self.shared = shared
        self.stream = stream
        self.maxlen = maxlen
        self._client: SyncClient | None = None
        self._generation = shared.master_generation

    def write(self, lines: list[bytes]) -> None:
        if self._client is None:
            self._client = self.shared.sync_client()
        if self._generation != self.shared.master_generation:
            self._generation = self.shared.master_generation
            pool = getattr(self._client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()
        pipe = self._client.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(self.stream, {"record": line.rstrip(b"\n")}, maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def reopen(self) -> None:
        return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
