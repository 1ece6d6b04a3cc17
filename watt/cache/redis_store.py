"""The HTTP cache's shared store in Redis (``httpCache.redis``; needs ``watt[redis]``).

Several Watt instances pointing at one Redis share hits and invalidations:
every lookup reads Redis, so an entry dropped by one instance is gone for all.
Layout, under ``prefix``:

- ``k:<method> <url>``: a hash, one field per variant (entry id), each value an
  entry packed with msgpack (never pickle or marshal: Redis is shared);
- ``t:<tag>``: a set of ``<key>\\n<entry id>`` members, for invalidation by tag.

Every key expires (the entry's freshness lifetime, plus an hour when it has a
validator and may still be revalidated), so nothing stays for ever; bound the
memory with Redis's own ``maxmemory`` and an LRU ``maxmemory-policy``.
"""

from __future__ import annotations

import msgpack

from watt.errors import WattError

from .policy import Entry
from .store import same_variant

#: Seconds an entry with a validator outlives its freshness (for revalidation).
REVALIDATE_WINDOW = 3600


def _client(config):
    try:
        import redis.asyncio as redis
    except ImportError as exc:
        raise WattError("httpCache.redis needs the redis package: pip install 'watt[redis]'",
                        code="WATT_CACHE_REDIS_MISSING") from exc
    return redis.from_url(config.url, socket_timeout=config.timeout,
                          socket_connect_timeout=config.timeout)


def _lifetime(entry: Entry) -> int:
    from hishel._core._spec import get_freshness_lifetime

    seconds = max(1, get_freshness_lifetime(entry.policy().response, True) or 0)
    validator = entry.header("etag") is not None or entry.header("last-modified") is not None
    return seconds + (REVALIDATE_WINDOW if validator else 0)


class RedisStore:
    """Same operations as :class:`~watt.cache.store.MemoryStore`, awaited."""

    def __init__(self, config, max_size: int) -> None:
        self.prefix = config.prefix
        self.max_size = max_size
        self.redis = _client(config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}k:{key}"

    async def get(self, key: str) -> list[Entry]:
        fields = await self.redis.hgetall(self._key(key))
        return [Entry.from_tuple(msgpack.unpackb(value, raw=False)) for value in fields.values()]

    async def put(self, entry: Entry) -> list[Entry]:
        if entry.size > self.max_size:
            return []
        key = self._key(entry.key)
        stale = [e.id for e in await self.get(entry.key) if same_variant(e, entry)]
        ttl = _lifetime(entry)
        async with self.redis.pipeline(transaction=True) as pipe:
            if stale:
                pipe.hdel(key, *stale)
            pipe.hset(key, entry.id, msgpack.packb(entry.to_tuple(), use_bin_type=True))
            pipe.expire(key, ttl, gt=True)
            pipe.expire(key, ttl, nx=True)
            for tag in entry.tags:
                tag_key = f"{self.prefix}t:{tag}"
                pipe.sadd(tag_key, f"{entry.key}\n{entry.id}")
                pipe.expire(tag_key, ttl, gt=True)
                pipe.expire(tag_key, ttl, nx=True)
            await pipe.execute()
        return []

    async def invalidate(self, keys: list[str], tags: list[str]) -> int:
        dropped = 0
        for tag in tags:
            tag_key = f"{self.prefix}t:{tag}"
            members = await self.redis.smembers(tag_key)
            for member in members:
                key, _, entry_id = member.decode().partition("\n")
                dropped += await self.redis.hdel(self._key(key), entry_id)
            await self.redis.delete(tag_key)
        for key in keys:
            dropped += await self.redis.hlen(self._key(key))
            await self.redis.delete(self._key(key))
        return dropped

    async def close(self) -> None:
        await self.redis.aclose()
