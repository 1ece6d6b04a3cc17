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

For responses the runtime does not see itself — external HTTP calls a worker
makes (the outbound pipeline) — the same store is reachable from any worker::

    hit = await watt.cache.lookup("GET", "https://api.example.com/rates", headers)
    if hit is None:
        response = ...  # make the call
        watt.cache.store("GET", url, headers, status, response_headers, body)
    else:
        status, response_headers, body = hit  # with an Age header

``headers`` are ``(name, value)`` pairs (str or bytes, any case).  ``lookup``
answers only from a fresh entry (RFC 9111 freshness, ``Vary``, request
``Cache-Control``), else None; ``store`` keeps the response if RFC 9111 and the
``httpCache`` safety rules allow it (fire and forget).  Entries stored so are
counted in the caller application's metrics, and invalidated by key (the URL)
and tag like any other.  Without ``httpCache``, ``lookup`` answers None and
``store`` does nothing.

Frames (worker -> main, then main -> worker)::

    (CACHE, 0, "invalidate", keys, tags)                    keys, tags: tuples of str
    (CACHE, 0, "get", token, method, url, headers)          headers: flat tuple of bytes
    (CACHE, 0, "got", token, status, headers, body, age)    status None: a miss
    (CACHE, 0, "put", method, url, headers, status, response_headers, body)
"""

from __future__ import annotations

import asyncio
import re
import threading

from watt.channel import protocol as _p
from watt.errors import WattError

__all__ = ["invalidate", "lookup", "normalize_url", "store"]

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


_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._~%!$&'()*+,;=-]+)(?::([0-9]{1,5}))?")


def invalidation_key(url: str) -> str:
    """:func:`normalize_url` for a URL given to drop: one no request can have (a space,
    a bad host or port) is refused, since it would silently drop nothing."""
    key = normalize_url(url)
    host = _HOST.fullmatch(key.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0])
    if host is None or int(host[2] or 0) > 65535 or any(c.isspace() or ord(c) < 32
                                                         for c in url):
        raise WattError(f"{url!r} is not a URL a request could have (a space or control "
                        "character, or a bad host or port): percent-encode the path "
                        "(%20) as clients send it", code="WATT_CACHE_BAD_INVALIDATION")
    return key


def _strings(values, name: str) -> tuple[str, ...]:
    if values is None:
        return ()
    values = values if isinstance(values, str | bytes) else list(values)
    if isinstance(values, str | bytes) or not all(isinstance(v, str) and v for v in values):
        raise WattError(f"`{name}` must be a list of non-empty strings, got {values!r}",
                        code="WATT_CACHE_BAD_INVALIDATION")
    return tuple(values)


def _send(channel, frame: tuple) -> None:
    from watt.worker import mesh_client as mc

    if threading.get_ident() == mc._loop_thread:
        channel.send(frame)
    else:  # a WSGI app's thread: in order with the response frames it sends
        mc._loop.call_soon_threadsafe(channel.send, frame)


def invalidate(keys=None, tags=None) -> None:
    """Drop cached responses: ``keys`` are URLs (both their GET and HEAD responses,
    every ``Vary`` variant), ``tags`` drop every response carrying any of them."""
    keys = tuple(invalidation_key(k) for k in _strings(keys, "keys"))
    tags = _strings(tags, "tags")
    if not keys and not tags:
        return
    from watt.worker import mesh_client as mc

    if mc._channel is not None:
        _send(mc._channel, (_p.CACHE, 0, "invalidate", keys, tags))
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


# -- lookup and store for a worker's own calls ------------------------------------------
#: Seconds ``lookup`` waits for the main side before it counts a miss.
LOOKUP_TIMEOUT = 5.0
_waiting: dict[int, asyncio.Future] = {}
_tokens = iter(range(1, 1 << 62))


def _flat(headers) -> tuple[bytes, ...]:
    items = headers.items() if hasattr(headers, "items") else headers or ()
    flat = []
    for name, value in items:
        flat.append((name.encode("latin-1") if isinstance(name, str) else bytes(name)).lower())
        flat.append(value.encode("latin-1") if isinstance(value, str) else bytes(value))
    return tuple(flat)


def _worker_channel():
    from watt.worker import mesh_client as mc

    if mc._channel is None:
        raise WattError("watt.cache.lookup and store run inside a Watt application",
                        code="WATT_CACHE_UNAVAILABLE")
    channel = mc._channel
    handler = channel.on_control
    if getattr(handler, "watt_cache", False) is False:  # route the answers to us, once
        def on_control(frame: tuple) -> None:
            if frame[0] == _p.CACHE and frame[2] == "got":
                future = _waiting.pop(frame[3], None)
                if future is not None and not future.done():
                    future.set_result(frame)
            elif handler is not None:
                handler(frame)

        on_control.watt_cache = True
        channel.on_control = on_control
    return channel


async def lookup(method: str, url: str, headers=None):
    """A fresh stored response for this request: ``(status, headers, body)`` (headers
    as pairs of bytes, with ``age``), or None."""
    channel = _worker_channel()
    token = next(_tokens)
    future = asyncio.get_running_loop().create_future()
    _waiting[token] = future
    channel.send((_p.CACHE, 0, "get", token, method.upper(), normalize_url(url), _flat(headers)))
    try:
        frame = await asyncio.wait_for(future, LOOKUP_TIMEOUT)
    except TimeoutError:
        return None
    finally:
        _waiting.pop(token, None)
    _, _, _, _, status, flat, body, _age = frame
    if status is None:
        return None
    return status, list(zip(flat[::2], flat[1::2], strict=True)), body


def store(method: str, url: str, request_headers, status: int, headers, body: bytes) -> None:
    """Offer a complete response to the store (kept only if RFC 9111 and ``httpCache``
    allow it)."""
    _send(_worker_channel(), (_p.CACHE, 0, "put", method.upper(), normalize_url(url),
                              _flat(request_headers), int(status), _flat(headers), bytes(body)))
