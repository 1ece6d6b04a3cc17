"""The runtime's HTTP cache on the main side: taps the channels of cached applications.

Every request to an application's worker — a mesh call relayed by the router
(``target`` = the application id), or a request from outside through the
entrypoint (``target`` None) — leaves the main side as a REQUEST frame on that
worker's channel, and its answer comes back as frames on the same channel.
:meth:`HttpCache.attach` wraps the ``send`` of each cached application's
channels, so the cache sees those REQUEST frames whatever engine or relay sent
them:

- a fresh stored response: the REQUEST never reaches the worker; the stored
  frames are fed to the stream's handler (the relay to the calling worker, or
  the entrypoint's exchange) on the next loop turn, with ``Age``;
- a stale one with validators: the REQUEST goes out with ``If-None-Match`` /
  ``If-Modified-Since``; a 304 refreshes the entry and the caller gets the
  stored response, anything else goes through (and may be stored);
- otherwise the REQUEST goes out and a :class:`_Recorder` in front of the
  stream's handler keeps a copy of the response (up to ``maxEntrySize``),
  stored at its end if RFC 9111 and the safety rules allow;
- an unsafe method (POST, PUT, DELETE, ...): an :class:`_Invalidator` drops the
  URL's entries when the answer is below 400 (RFC 9111 §4.4).

The decisions are :mod:`watt.cache.policy`'s (hishel's state machine); the
store is :class:`~watt.cache.store.MemoryStore`, or
:class:`~watt.cache.redis_store.RedisStore` whose calls are awaited in a task
before the REQUEST goes out or is answered.
"""

from __future__ import annotations

import asyncio

from loguru import logger

from watt.channel import protocol as p
from watt.errors import WattError

from . import policy
from .store import MemoryStore

_STAT_NAMES = ("hits", "misses", "stores", "evictions")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Headers a 304 answer from the cache carries (RFC 9110 §15.4.5).
_NOT_MODIFIED_HEADERS = frozenset({"cache-control", "content-location", "date", "etag",
                                   "expires", "vary", "last-modified"})


class HttpCache:
    """The one HTTP cache of a runtime: lookups, stores, invalidation, statistics."""

    def __init__(self, config, entrypoint: str | None) -> None:
        self.config = config
        self.entrypoint = entrypoint
        self.tags_header = config.cache_tags_header.lower()
        if config.redis is not None:
            from .redis_store import RedisStore

            self.store = RedisStore(config.redis, config.max_size)
        else:
            self.store = MemoryStore(config.max_size)
        self.shared = config.redis is not None
        self.stats: dict[str, list[int]] = {}
        self._tasks: set[asyncio.Task] = set()

    # -- which requests --------------------------------------------------------------
    def caches_mesh(self, app_id: str) -> bool:
        """Mesh calls to ``app_id`` go through the cache (so they get no direct link)."""
        apps = self.config.applications
        return apps is None or app_id in apps

    def attach(self, worker) -> None:
        """Tap ``worker``'s channel when its application is cached (any path)."""
        app = worker.app_id
        mesh = self.caches_mesh(app)
        entry = self.config.entrypoint and app == self.entrypoint
        if not (mesh or entry):
            return
        channel = worker.channel
        original = channel.send

        def send(frame: tuple) -> None:
            kind = frame[0]
            if kind == p.REQUEST:
                target = frame[2]
                if (mesh if target is not None else entry) and self._request(
                        channel, original, frame, app):
                    return
            elif kind == p.CANCEL:  # the caller left: its handler takes the stream back
                tee = channel.streams.get(frame[1])
                if isinstance(tee, _Recorder | _Invalidator):
                    tee.detach()
            original(frame)

        channel.send = send

    # -- requests ----------------------------------------------------------------------
    def _request(self, channel, send, frame: tuple, app: str) -> bool:
        """Handle a REQUEST frame; True when the cache took it (answered, or will send)."""
        _, sid, target, scope, body, more = frame
        method = scope[2]
        if scope[0] != "http":
            return False
        if method not in _SAFE:  # RFC 9111 §4.4: a success drops the URL's entries
            handler = channel.streams.get(sid)
            if handler is not None:
                try:
                    channel.streams[sid] = _Invalidator(self, channel, sid, handler,
                                                        _url(target, scope))
                except WattError:
                    pass
            return False
        if more or body or method not in ("GET", "HEAD"):
            return False
        try:
            url = _url(target, scope)
        except WattError:  # a Host header that makes no URL: not cached
            return False
        key = policy.cache_key(method, url)
        exchange = _Exchange(self, channel, send, frame, app, method, url, key,
                             policy.header_lists(scope[8]))
        if self.shared:
            self._spawn(self._lookup_shared(exchange))
            return True
        return exchange.decide(self.store.get(key))

    async def _lookup_shared(self, exchange: _Exchange) -> None:
        try:
            entries = await self.store.get(exchange.key)
        except Exception as exc:  # noqa: BLE001 - the store is down: a miss, not a failure
            logger.warning(f"httpCache: Redis lookup failed ({type(exc).__name__}: {exc}); "
                           "answering from the application")
            entries = []
        if exchange.channel.streams.get(exchange.frame[1]) is None:
            return  # the caller went away meanwhile
        if not exchange.decide(entries):
            exchange.send(exchange.frame)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the store -----------------------------------------------------------------------
    def count(self, app: str, what: int) -> None:
        stats = self.stats.get(app)
        if stats is None:
            stats = self.stats[app] = [0, 0, 0, 0]
        stats[what] += 1

    def offer(self, app: str, method: str, url: str, request_headers: dict[str, list[str]],
              status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Store a complete response if RFC 9111 and the safety rules allow it."""
        headers = policy.with_date(headers)
        ok, default_ttl = policy.storable(method, url, request_headers, status, headers,
                                          self.config)
        if ok:
            self.put(policy.Entry(
                key=policy.cache_key(method, url), app=app, method=method, url=url,
                status=status, headers=headers, body=body,
                request_headers=policy.varied(request_headers, headers),
                tags=policy.tags_of(headers, self.tags_header), default_ttl=default_ttl))

    def put(self, entry: policy.Entry) -> None:
        self.count(entry.app, 2)
        if self.shared:
            self._spawn(self._put_shared(entry))
            return
        for evicted in self.store.put(entry):
            self.count(evicted.app, 3)

    async def _put_shared(self, entry: policy.Entry) -> None:
        try:
            await self.store.put(entry)
        except Exception as exc:  # noqa: BLE001
            logger.warning(f"httpCache: Redis store failed ({type(exc).__name__}: {exc})")

    async def invalidate(self, keys=(), tags=()) -> int:
        """Drop the entries of ``keys`` (URLs: their GET and HEAD responses) and those
        tagged with any of ``tags``; returns how many were dropped."""
        if self.shared:
            try:
                return await self.store.invalidate(_cache_keys(keys), list(tags))
            except Exception as exc:  # noqa: BLE001 - Redis down or slow: say it, never 500
                raise WattError(f"httpCache: the Redis store could not drop the entries "
                                f"({type(exc).__name__}: {exc}); they may still be served: "
                                "invalidate again once Redis answers",
                                code="WATT_CACHE_STORE_UNAVAILABLE") from None
        return self.store.invalidate(_cache_keys(keys), list(tags))

    async def _invalidate_or_warn(self, keys, tags) -> None:
        try:
            await self.invalidate(keys, tags)
        except WattError as exc:  # a task nobody awaits: its failure is logged, not lost
            logger.warning(str(exc))

    def invalidate_soon(self, keys=(), tags=()) -> None:
        """:meth:`invalidate` from a callback (a worker's CACHE frame): the memory store
        at once, a shared store in a task."""
        if self.shared:
            self._spawn(self._invalidate_or_warn(keys, tags))
            return
        try:
            self.store.invalidate(_cache_keys(keys), list(tags))
        except WattError as exc:  # checked in the worker already: not expected
            logger.warning(f"httpCache: invalidation refused: {exc}")

    # -- a worker's own calls (watt.cache.lookup / store) ------------------------------
    def on_worker_frame(self, worker, frame: tuple) -> None:
        """``(CACHE, 0, op, ...)`` from a worker: invalidate, get (answered) or put."""
        op = frame[2]
        if op == "invalidate":
            self.invalidate_soon(frame[3], frame[4])
        elif op == "get":
            _, _, _, token, method, url, flat = frame
            channel = worker.channel
            if self.shared:
                self._spawn(self._get_shared(channel, worker.app_id, token, method, url, flat))
            else:
                self._reply(channel, worker.app_id, token, method, url, flat,
                            self.store.get(policy.cache_key(method, url)))
        elif op == "put":
            _, _, _, method, url, flat, status, response, body = frame
            if len(body) > self.config.max_entry_size:
                return
            self.offer(worker.app_id, method, url, policy.header_lists(flat), status,
                       [(n.lower(), v) for n, v in _pairs(response)], body)

    async def _get_shared(self, channel, app, token, method, url, flat) -> None:
        try:
            entries = await self.store.get(policy.cache_key(method, url))
        except Exception as exc:  # noqa: BLE001 - a miss, as for a request
            logger.warning(f"httpCache: Redis lookup failed ({type(exc).__name__}: {exc})")
            entries = []
        self._reply(channel, app, token, method, url, flat, entries)

    def _reply(self, channel, app, token, method, url, flat, entries) -> None:
        decision = policy.lookup(method, url, policy.header_lists(flat), entries)
        if isinstance(decision, policy.Hit) and not decision.not_modified:
            self.count(app, 0)
            entry = decision.entry
            headers = tuple(x.encode("latin-1") for n, v in entry.headers if n != "age"
                            for x in (n, v)) + (b"age", str(decision.age).encode())
            channel.send((p.CACHE, 0, "got", token, entry.status, headers, entry.body,
                          decision.age))
        else:
            self.count(app, 1)
            channel.send((p.CACHE, 0, "got", token, None, (), b"", 0))

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Per application: hits, misses, stores, evictions, size (bytes; memory store)."""
        sizes = getattr(self.store, "sizes", {})
        return {app: dict(zip(_STAT_NAMES, values, strict=True), size=sizes.get(app, 0))
                for app, values in sorted(self.stats.items())}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        close = getattr(self.store, "close", None)
        if close is not None:
            await close()


def _pairs(flat: tuple[bytes, ...]) -> list[tuple[str, str]]:
    return [(flat[i].decode("latin-1"), flat[i + 1].decode("latin-1"))
            for i in range(0, len(flat), 2)]


def worker_frame(cache: HttpCache | None, worker, frame: tuple) -> None:
    """A worker's CACHE frame; without a cache, a lookup is a miss and the rest nothing."""
    if cache is not None:
        cache.on_worker_frame(worker, frame)
    elif frame[2] == "get":
        worker.channel.send((p.CACHE, 0, "got", frame[3], None, (), b"", 0))


def _cache_keys(urls) -> list[str]:
    return [policy.cache_key(method, policy.normalize_url(url))
            for url in urls for method in ("GET", "HEAD")]


def _url(target: str | None, scope: tuple) -> str:
    raw_path, query = scope[5], scope[6]
    path = raw_path.decode("latin-1") if raw_path is not None else scope[4]
    query = "?" + query.decode("latin-1") if query else ""
    if target is not None:  # already in normal form: lower-case id, no port
        return f"http://{target.lower()}{p.MESH_SUFFIX}{path or '/'}{query}"
    return policy.normalize_url(f"{scope[3]}://{_host(scope)}{path}{query}")


def _host(scope: tuple) -> str:
    flat = scope[8]
    for i in range(0, len(flat), 2):
        if flat[i] == b"host":
            return flat[i + 1].decode("latin-1")
    server = scope[10]
    return f"{server[0]}:{server[1]}" if server else "localhost"


class _Exchange:
    """One cacheable request on its way: what the cache knows about it."""

    __slots__ = ("app", "cache", "channel", "frame", "key", "method", "request_headers",
                 "send", "url")

    def __init__(self, cache: HttpCache, channel, send, frame: tuple, app: str, method: str,
                 url: str, key: str, request_headers: dict[str, list[str]]) -> None:
        self.cache = cache
        self.channel = channel
        self.send = send
        self.frame = frame
        self.app = app
        self.method = method
        self.url = url
        self.key = key
        self.request_headers = request_headers

    def decide(self, entries: list[policy.Entry]) -> bool:
        """Answer, revalidate or record; True when the REQUEST was dealt with here."""
        decision = policy.lookup(self.method, self.url, self.request_headers, entries)
        sid = self.frame[1]
        if isinstance(decision, policy.Hit):
            self.cache.count(self.app, 0)
            entry = decision.entry
            if decision.not_modified:
                headers = [(n, v) for n, v in entry.headers if n in _NOT_MODIFIED_HEADERS]
                answer = (304, headers, b"", decision.age)
            else:
                answer = (entry.status, entry.headers, entry.body, decision.age)
            asyncio.get_running_loop().call_soon(_answer, self.channel, sid, *answer)
            return True
        self.cache.count(self.app, 1)
        handler = self.channel.streams.get(sid)
        if handler is None:
            return False
        if isinstance(decision, policy.Revalidate):
            _, _, target, scope, body, more = self.frame
            extra = tuple(x.encode("latin-1") for pair in decision.conditions for x in pair)
            scope = scope[:8] + (scope[8] + extra,) + scope[9:]
            self.channel.streams[sid] = _Recorder(self, handler, decision.entry)
            self.send((p.REQUEST, sid, target, scope, body, more))
            return True
        self.channel.streams[sid] = _Recorder(self, handler, None)
        return False


def _answer(channel, sid: int, status: int, headers: list[tuple[str, str]], body: bytes,
            age: int) -> None:
    """Feed a stored response to the stream's handler, as the worker would have sent it."""
    handler = channel.streams.get(sid)
    if handler is None:
        return  # the caller went away
    flat = tuple(x.encode("latin-1") for name, value in headers if name != "age"
                 for x in (name, value)) + (b"age", str(age).encode())
    pieces = p.split_chunks(body)
    last = len(pieces) - 1
    handler.feed((p.RESPONSE_START, sid, status, flat, pieces[0], last > 0))
    for i in range(1, last + 1):
        handler.feed((p.RESPONSE_BODY, sid, pieces[i], i < last))


class _Recorder:
    """In front of a stream's handler: passes every frame on and keeps a copy of the
    response; a 304 to the cache's own revalidation is answered from the entry."""

    __slots__ = ("body", "exchange", "handler", "headers", "revalidating", "size", "status")

    def __init__(self, exchange: _Exchange, handler, revalidating: policy.Entry | None) -> None:
        self.exchange = exchange
        self.handler = handler
        self.revalidating = revalidating
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] | None = []  # None: too large, or not kept
        self.size = 0

    def detach(self) -> None:
        """Give the stream back to its handler (which then finishes it as usual)."""
        channel, sid = self.exchange.channel, self.exchange.frame[1]
        if channel.streams.get(sid) is self:
            channel.streams[sid] = self.handler
        self.body = None

    def feed(self, frame: tuple) -> None:
        kind = frame[0]
        final = kind in p.TERMINAL
        if kind == p.RESPONSE_START:
            _, _, status, flat, chunk, more = frame
            self.status = status
            self.headers = [(flat[i].decode("latin-1").lower(), flat[i + 1].decode("latin-1"))
                            for i in range(0, len(flat), 2)]
            if status == 304 and self.revalidating is not None:
                self._refresh(more)
                return
            self._keep(chunk)
            final = not more
        elif kind == p.RESPONSE_BODY:
            self._keep(frame[2])
            final = not frame[3]
        if final:
            self.detach() if kind in p.TERMINAL else self._done()
        self.handler.feed(frame)
        if final:
            _forget(self.exchange.channel, self.exchange.frame[1], self.handler)

    def _keep(self, chunk: bytes) -> None:
        if self.body is None:
            return
        self.size += len(chunk)
        if self.size > self.exchange.cache.config.max_entry_size:
            self.body = None
        else:
            self.body.append(chunk)

    def _done(self) -> None:
        body = self.body
        self.detach()
        if body is None:
            return
        exchange = self.exchange
        exchange.cache.offer(exchange.app, exchange.method, exchange.url,
                             exchange.request_headers, self.status, self.headers,
                             b"".join(body))

    def _refresh(self, more: bool) -> None:
        """The application said 304 to our conditional request: the entry is good."""
        exchange, entry = self.exchange, self.revalidating
        channel, sid = exchange.channel, exchange.frame[1]
        self.detach()
        headers = policy.refreshed(entry, policy.with_date(self.headers))
        if more:  # a 304 has no body; whatever follows is dropped with the stream
            channel.send((p.CANCEL, sid))
        if headers:
            fresh = policy.Entry(key=entry.key, app=entry.app, method=entry.method, url=entry.url,
                                 status=entry.status, headers=headers, body=entry.body,
                                 request_headers=entry.request_headers,
                                 tags=policy.tags_of(headers, exchange.cache.tags_header),
                                 default_ttl=entry.default_ttl)
            exchange.cache.put(fresh)
            entry = fresh
        _answer(channel, sid, entry.status, entry.headers, entry.body, 0)
        _forget(channel, sid, self.handler)


def _forget(channel, sid: int, handler) -> None:
    """A handler that finished while a tee stood in front of it could not remove
    itself from the channel's streams: do it for it."""
    if getattr(handler, "finished", False) and channel.streams.get(sid) is handler:
        del channel.streams[sid]


class _Invalidator:
    """In front of an unsafe request's handler (POST, PUT, DELETE, ...): a response
    below 400 drops the stored GET and HEAD responses of its URL (RFC 9111 §4.4)."""

    __slots__ = ("cache", "channel", "handler", "sid", "url")

    def __init__(self, cache: HttpCache, channel, sid: int, handler, url: str) -> None:
        self.cache = cache
        self.channel = channel
        self.sid = sid
        self.handler = handler
        self.url = url

    def detach(self) -> None:
        if self.channel.streams.get(self.sid) is self:
            self.channel.streams[self.sid] = self.handler

    def feed(self, frame: tuple) -> None:
        kind = frame[0]
        done = kind == p.RESPONSE_START or kind in p.TERMINAL
        if done:
            self.detach()
            if kind == p.RESPONSE_START and frame[2] < 400:
                self.cache.invalidate_soon([self.url], ())
        self.handler.feed(frame)
        if done:
            _forget(self.channel, self.sid, self.handler)


def cache_families(snapshot: dict[str, dict[str, int]]) -> list:
    """``watt_http_cache_*`` per application, from :meth:`HttpCache.snapshot` (pure)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counters = {name: CounterMetricFamily(f"watt_http_cache_{name}", text,
                                          labels=["applicationId"])
                for name, text in (("hits", "Requests answered from the HTTP cache."),
                                   ("misses", "Cacheable requests the application answered "
                                              "(revalidations included)."),
                                   ("stores", "Responses stored in the HTTP cache."),
                                   ("evictions", "Entries dropped to make room (maxSize)."))}
    size = GaugeMetricFamily("watt_http_cache_size_bytes", "Bytes the application's entries "
                             "take in the memory store.", labels=["applicationId"])
    for app, stats in snapshot.items():
        for name, family in counters.items():
            family.add_metric([app], stats[name])
        size.add_metric([app], stats["size"])
    return [*counters.values(), size]
