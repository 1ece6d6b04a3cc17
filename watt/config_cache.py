"""Configuration of the HTTP cache: ``httpCache`` (docs/cache.md).

Part of the schema in :mod:`watt.config` (kept apart only to keep that module
readable); the same rules hold: unknown keys are errors, keys are camelCase.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class RedisCacheConfig(_Section):
    """A store in Redis shared by several Watt instances (needs ``watt[redis]``)."""

    url: Annotated[str, _doc("Redis URL: redis://host:port/db, rediss://..., or "
                             "unix:///path/to/redis.sock.", pattern=r"^(redis|rediss|unix)://")]
    prefix: Annotated[str, _doc("Prefix of every key Watt writes, so several caches can "
                                "share one Redis database.")] = "watt:cache:"
    timeout: Annotated[float, _doc("Seconds a Redis command may take before the cache acts "
                                   "as a miss (the request goes to the application).",
                                   gt=0)] = 1.0


class HttpCacheConfig(_Section):
    """Caches GET/HEAD responses of mesh calls and of the entrypoint (RFC 9111 rules)."""

    enabled: Annotated[bool, _doc("Turn the cache on.")] = True
    max_size: Annotated[int, _doc("Bytes of responses (bodies and headers) kept in memory; the "
                                  "least recently used go first.", ge=0)] = 64 * 1024 * 1024
    max_entry_size: Annotated[int, _doc("Largest response (bytes) that is stored.",
                                        ge=0)] = 1024 * 1024
    default_ttl: Annotated[
        int, _doc("Seconds a response without its own freshness (no max-age, s-maxage "
                  "or Expires) stays fresh; 0: such responses are only kept when they carry "
                  "a validator (ETag or Last-Modified).", ge=0)] = msgspec.field(
        default=0, name="defaultTTL")
    applications: Annotated[
        list[str] | None, _doc("Ids of the applications whose mesh responses are cached "
                               "(null: every application).")] = None
    entrypoint: Annotated[bool, _doc("Cache the entrypoint application's responses to "
                                     "outside clients too.")] = False
    cache_tags_header: Annotated[str, _doc(
        "Response header listing the response's tags (comma separated), for "
        "invalidation by tag.", pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")] = "x-cache-tags"
    allow_set_cookie: Annotated[bool, _doc("Store responses that set cookies (off: never, "
                                           "whatever Cache-Control says).")] = False
    allow_authorization: Annotated[bool, _doc(
        "Store responses to requests with an Authorization header when the response "
        "allows it (public, s-maxage or must-revalidate); off: never.")] = False
    redis: Annotated[RedisCacheConfig | None, _doc(
        "Keep entries in Redis instead of memory, shared by every Watt instance using "
        "it.")] = None
