"""The shared (second-level) signed-URL cache in Redis, for backends whose signing is expensive."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.models import SignedUrl
from gateway.redis.client import SharedRedis


class RedisUrlCache:
    """Entries expire in Redis when their minimum remaining life is reached, and are checked
    again on read, so that no replica ever serves a URL with less than that life left."""

    def __init__(self, shared: SharedRedis) -> None:
        self.shared = shared

    async def get_many(self, keys: Sequence[str], *, now: float, min_remaining: float) -> list[SignedUrl | None]:
        """Raises RedisDown when Redis cannot be asked; the caller falls back to signing."""
        names = [self.shared.key("url", k) for k in keys]
        values = await self.shared.get_many(names)
        found: list[SignedUrl | None] = []
        for value in values:
            url = _decode(value)
            found.append(url if url is not None and url.expires_at - now >= min_remaining else None)
        return found

    async def put_many(self, items: Sequence[tuple[str, SignedUrl]], *, now: float, min_remaining: float) -> None:
        async def write(r: object) -> None:
            pipe = self.shared.client.pipeline(transaction=False)
            for key, url in items:
                ttl_ms = int((url.expires_at - now - min_remaining) * 1000)
                if ttl_ms > 0:  # never store a URL that is already too old to hand out
                    pipe.set(self.shared.key("url", key), _encode(url), px=ttl_ms)
            await pipe.execute()

        await self.shared.call(write)


def _encode(url: SignedUrl) -> bytes:
    return f"{url.expires_at!r}|{url.signed_at!r}|{url.url}".encode()


def _decode(value: object) -> SignedUrl | None:
    if not isinstance(value, bytes):
        return None
    try:
        expires, signed, url = value.decode().split("|", 2)
        return SignedUrl(url, float(expires), float(signed))
    except ValueError:
        return None  # a foreign or damaged entry is a miss, never an error
