"""``watt.cache``: the runtime's HTTP cache, as an application sees it.

The cache itself runs in the main interpreter (``httpCache`` in watt.json,
docs/cache.md): one store for every worker of the runtime, applied to mesh
calls and, when configured, to the entrypoint's responses.  From inside any
application (a subinterpreter, a process or a thread of one)::

    import watt.cache

    watt.cache.invalidate(keys=["http://catalog.plt.local/items/7"])  # its GET and HEAD
    watt.cache.invalidate(tags=["item-7", "catalog"])  # every response tagged so

A response is tagged by the application that sends it, with the header named
by ``httpCache.cacheTagsHeader`` (default ``x-cache-tags: item-7, catalog``).
Invalidation is sent to the main side as a control frame on the worker's
channel, ahead of the frames of the response being written, so the next
request (this worker's or any other's) no longer gets the dropped entries.
It returns at once; with a Redis store the deletion itself follows within the
round trip to Redis.

This module loads in a subinterpreter (standard library and ``watt.channel``
only); the store lives in ``watt/cache/tap.py``, ``store.py``,
``redis_store.py`` and the RFC 9111 rules in ``policy.py`` (main side).

Frames (worker -> main): ``(CACHE, 0, "invalidate", keys, tags)``, both
tuples of str.  Only invalidation is offered to workers for now: a
worker-side lookup/store path (for external GET calls cached by the same
store) is not built yet.
"""

from __future__ import annotations

import asyncio
import re
import threading

from watt.channel import protocol as _p
from watt.errors import WattError

__all__ = ["invalidate", "normalize_url"]

#: The main side's cache when ``invalidate`` is called in the main interpreter
#: (set by the runtime that owns it, with the loop it runs on).
_local = None
_local_loop = None


#: scheme://authority, then anything (the management API's schema says the same).
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]+)([^?#]*)(?:\?([^#]*))?(?:#.*)?", re.S)


def normalize_url(url: str) -> str:
    """One spelling per URL: lower-case scheme and host, no default port, ``/`` for an
    empty path, no fragment.  Anything that starts with ``scheme://host`` is taken."""
    match = _URL.fullmatch(url) if isinstance(url, str) else None
    if match is None:
        raise WattError(f"{url!r} is not a full URL (http://host/path)",
                        code="WATT_CACHE_BAD_INVALIDATION")
    scheme, host, path, query = match.groups()
    scheme, host = scheme.lower(), host.lower()
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and "]" not in port:
        host = name.rstrip(".") + ("" if (scheme, port) in (("http", "80"), ("https", "443"))
                                   else f":{port}")
    else:
        host = host.rstrip(".")
    return f"{scheme}://{host}{path or '/'}" + (f"?{query}" if query else "")


def _strings(values, name: str) -> tuple[str, ...]:
    if values is None:
        return ()
    values = values if isinstance(values, str | bytes) else list(values)
    if isinstance(values, str | bytes) or not all(isinstance(v, str) and v for v in values):
        raise WattError(f"`{name}` must be a list of non-empty strings, got {values!r}",
                        code="WATT_CACHE_BAD_INVALIDATION")
    return tuple(values)


def invalidate(keys=None, tags=None) -> None:
    """Drop cached responses: ``keys`` are URLs (both their GET and HEAD responses,
    every ``Vary`` variant), ``tags`` drop every response carrying any of them."""
    keys = tuple(normalize_url(k) for k in _strings(keys, "keys"))
    tags = _strings(tags, "tags")
    if not keys and not tags:
        return
    from watt.worker import mesh_client as mc

    channel = mc._channel
    if channel is not None:
        frame = (_p.CACHE, 0, "invalidate", keys, tags)
        if threading.get_ident() == mc._loop_thread:
            channel.send(frame)
        else:  # a WSGI app's thread: in order with the response frames it sends
            mc._loop.call_soon_threadsafe(channel.send, frame)
        return
    if _local is None:
        raise WattError("watt.cache.invalidate needs a running Watt runtime with httpCache "
                        "enabled (call it from an application)", code="WATT_CACHE_UNAVAILABLE")
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is _local_loop:
        _local.invalidate_soon(keys, tags)
    else:  # another thread of the main interpreter
        _local_loop.call_soon_threadsafe(_local.invalidate_soon, keys, tags)
