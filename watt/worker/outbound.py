"""Every outgoing HTTP request of a worker — mesh or external — through one pipeline.

The client adapters (``mesh_httpx``, ``mesh_urllib3``, ``mesh_urllib``,
``mesh_aiohttp``, ``watt.mesh.fetch``) each turn their client's request into
a :class:`Request` once, hand it to :func:`call_async` or :func:`call_sync`
with a ``send`` function (the client's own transport, or the mesh) and a
``build`` function (a :class:`Response` made by a hook -> the client's own
response type).  In between run the interceptors (``mesh.interceptors`` then
``applications[].interceptors``), outermost first::

    async def hook(request, call_next):
        request.headers.set("x-api-key", KEY)    # read or change the request
        response = await call_next(request)       # send it (again, to retry)
        return response                           # or a Response(...) of its own

A hook is always an ``async def``: for synchronous clients (requests, urllib3,
urllib, httpx.Client) the same coroutine is driven to its end without an
event loop, on the client's thread — there it may await only ``call_next``,
``request.sleep`` and ``response.discard``.  A failed send reaches the hooks
as :class:`SendError` (the client's own exception in ``.original``) and the
application as the client's own exception.  An exception from a hook becomes
:class:`InterceptorError` ``WATT_INTERCEPTOR_FAILED`` naming the hook.

External calls (not ``*.plt.local``) are observed here, per attempt: a CLIENT
span with W3C/B3 headers, the ``http_client_request_duration_seconds`` metric
and a debug log line (mesh calls are observed by ``MeshCall`` itself).

Standard library only: this runs in subinterpreters.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
import time
from urllib.parse import urlsplit

from watt.channel import protocol as p

_hooks: tuple = ()  # ((name, hook), ...), outermost first
_observer = None  # observe.Observer of this worker
_app_id: str | None = None
#: ``{"max_entry_size": N, "default_ttl": S}`` when the runtime has ``httpCache``:
#: external GETs use it.
_cache: dict | None = None
#: Statuses RFC 9111 lets a cache store without explicit freshness (and 308, 204...).
_CACHEABLE = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


class InterceptorError(Exception):
    """An interceptor failed, refused the call or could not be loaded; ``code`` is a
    stable WATT_ code and ``hook`` the interceptor's name."""

    def __init__(self, code: str, message: str, hook: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.hook = code, message, hook


class SendError(Exception):
    """The request could not be sent or answered; ``original`` is the client's own
    exception, which the application receives when no hook handles this one."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


def _text(value) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


class Headers:
    """Ordered header pairs of ``str``, names compared without case.

    Built from the client's pairs (bytes or str) lazily: a request no hook
    looks at is not converted (``touched`` stays false)."""

    __slots__ = ("_items", "_source")

    def __init__(self, items=()) -> None:
        self._source = items
        self._items: list[tuple[str, str]] | None = None

    @property
    def _list(self) -> list[tuple[str, str]]:
        if self._items is None:
            self._items = [(_text(k), _text(v)) for k, v in self._source]
            self._source = None
        return self._items

    @property
    def touched(self) -> bool:
        """Whether anything read or changed the headers (else the client's stand)."""
        return self._items is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((v for k, v in self._list if k.lower() == name), default)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``."""
        self.remove(name)
        self._list.append((name, _text(value)))

    def add(self, name: str, value: str) -> None:
        self._list.append((name, _text(value)))

    def remove(self, name: str) -> None:
        lowered = name.lower()
        self._items = [(k, v) for k, v in self._list if k.lower() != lowered]

    def items(self) -> list[tuple[str, str]]:
        return list(self._list)

    def raw(self) -> list[tuple[bytes, bytes]]:
        """Lowercase byte pairs, as the mesh and httpx carry them."""
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self._list]

    def __iter__(self):
        return iter(self._list)

    def __len__(self) -> int:
        return len(self._list)

    def __repr__(self) -> str:
        return f"Headers({self._list!r})"


class _Now:
    """An awaitable that does its work when awaited, without suspending: what a hook
    awaits in a synchronous client's call."""

    __slots__ = ("args", "fn")

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __await__(self):
        yield from ()
        return self.fn(*self.args)


class Request:
    """An outgoing request as interceptors see it.

    Changeable: ``headers`` and ``timeout`` (seconds, None = the client's own).
    Read-only by convention: ``method``, ``url``, ``host``, ``body`` (bytes, or
    None when the client streams it: such a request cannot be sent twice),
    ``mesh`` (a ``*.plt.local`` host), ``app`` (the calling application),
    ``attempt`` (sends so far), ``is_async``.  ``state`` is free for hooks.
    """

    __slots__ = ("_host", "_injected", "app", "attempt", "body", "headers", "is_async",
                 "method", "state", "timeout", "url")

    def __init__(self, method: str, url: str, headers=(), body: bytes | None = b"",
                 timeout: float | None = None, is_async: bool = True) -> None:
        self.method = method.upper()
        self.url = url
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.timeout = timeout
        self.is_async = is_async
        self.app = _app_id
        self.attempt = 0
        self.state: dict = {}
        self._host: str | None = None
        self._injected: set[str] | None = None

    @property
    def host(self) -> str:
        if self._host is None:
            self._host = (urlsplit(self.url).hostname or "").lower()
        return self._host

    @property
    def mesh(self) -> bool:
        return p.mesh_app_id(self.host) is not None

    @property
    def replayable(self) -> bool:
        return self.body is not None

    def sleep(self, seconds: float):
        """Await this to wait (a retry's backoff) in the way the client's call allows."""
        return asyncio.sleep(seconds) if self.is_async else _Now(time.sleep, seconds)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class Response:
    """A response as interceptors see it: ``status``, ``headers`` (:class:`Headers`),
    ``body`` (bytes when the hook made it or the client read it, else None).

    One from ``call_next`` carries the client's own response (``native``): what
    the application receives.  ``await response.discard()`` drops it (before a
    retry); returning a new ``Response(status, headers, body)`` answers without
    sending, or replaces the one received.
    """

    __slots__ = ("_discard", "_read", "body", "headers", "native", "status")

    def __init__(self, status: int, headers=(), body: bytes | None = b"", *, native=None,
                 discard=None, read=None) -> None:
        self.status = int(status)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.native = native
        self._discard = discard
        self._read = read

    async def read(self) -> bytes:
        """The whole body (the client's own response is read, and decoded, by it)."""
        if self.body is None and self._read is not None:
            body = self._read()
            self.body = bytes(await body if inspect.isawaitable(body) else body)
        return self.body or b""

    async def discard(self) -> None:
        if self._discard is not None:
            done, self._discard = self._discard(), None
            if inspect.isawaitable(done):
                await done

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


# -- set-up ------------------------------------------------------------------------------
def install(entries, observer=None, app_id: str | None = None, cache: dict | None = None) -> None:
    """Load the interceptors (``[[module:callable, options], ...]``) of this worker;
    ``cache``: the runtime's ``httpCache`` applies to external GETs."""
    global _hooks, _observer, _app_id, _cache
    _observer, _app_id, _cache = observer, app_id, cache
    _hooks = tuple(_load(use, options or {}) for use, options in entries or ())


def _invalid(use: str, why: str) -> InterceptorError:
    return InterceptorError("WATT_INTERCEPTOR_INVALID", f"interceptor {use!r}: {why}", use)


def _load(use: str, options: dict) -> tuple:
    module_name, _, attr = use.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # ImportError, AttributeError, or the module's own failure
        raise _invalid(use, f"cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, type):  # a class: built once per worker with its options
        try:
            obj = obj(**options)
        except Exception as exc:
            raise _invalid(use, f"bad options {options!r} ({type(exc).__name__}: {exc})") from exc
    elif options:
        raise _invalid(use, "options are given but it is a function, not a class")
    call = getattr(obj, "__call__", None)  # noqa: B004 - a class instance's coroutine method
    if not (inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call)):
        raise _invalid(use, "is not an async callable: write `async def hook(request, "
                       "call_next)`")
    return use, obj


def intercepting() -> bool:
    """True when interceptors are configured (mesh calls then go through them)."""
    return bool(_hooks)


def wanted(host: str | None) -> bool:
    """Whether a call to ``host`` goes through the pipeline: every call when there
    are interceptors, else only external calls inside a worker (to observe them)."""
    return bool(_hooks) or ((_observer is not None or _cache is not None)
                            and p.mesh_app_id(host) is None)


# -- running -----------------------------------------------------------------------------
async def call_async(request: Request, send, build):
    """Run ``request`` through the interceptors; ``send(request)`` is awaited and
    returns a :class:`Response`; the result is the client's own response."""
    if not _hooks and _cache is None:  # nothing to run around the send: no coroutine chain
        record = _begin(request)
        try:
            response = await send(request)
        except BaseException as exc:
            _failed(record, exc)
            raise
        _end(record, response)
        return response.native
    try:
        response = await _next(request, send, 0)
    except SendError as failed:
        original = failed.original
    else:
        if response.native is not None:
            return response.native
        native = build(response)
        return await native if inspect.isawaitable(native) else native
    raise original


def call_sync(request: Request, send, build):
    """:func:`call_async` for a synchronous client, on its own thread."""
    if not _hooks and _cache is None:
        record = _begin(request)
        try:
            response = send(request)
        except BaseException as exc:
            _failed(record, exc)
            raise
        _end(record, response)
        return response.native
    coro = _next(request, send, 0)
    try:
        try:
            coro.send(None)
        except StopIteration as done:
            response = done.value
        else:
            coro.close()
            raise InterceptorError(
                "WATT_INTERCEPTOR_FAILED", "an interceptor awaited asyncio work during a "
                "synchronous client's call; await only call_next(), request.sleep() and "
                "response.discard() there")
    except SendError as failed:
        original = failed.original
    else:
        return response.native if response.native is not None else build(response)
    raise original


async def _next(request: Request, send, index: int) -> Response:
    if index == len(_hooks):
        if _cache is not None and _cache_applies(request):
            return await _through_cache(request, send)
        return await _send(request, send)
    name, hook = _hooks[index]

    def call_next(req: Request | None = None):  # the inner coroutine itself: awaited once
        return _next(req or request, send, index + 1)

    try:
        response = await hook(request, call_next)
    except SendError:
        raise
    except InterceptorError as exc:
        if exc.hook is None:
            exc.hook = name
            exc.message = f"interceptor {name!r}: {exc.message}"
            exc.args = (f"{exc.code}: {exc.message}",)
        raise
    except Exception as exc:
        raise InterceptorError("WATT_INTERCEPTOR_FAILED", f"interceptor {name!r} raised "
                               f"{type(exc).__name__}: {exc}", name) from exc
    if not isinstance(response, Response):
        raise InterceptorError("WATT_INTERCEPTOR_FAILED", f"interceptor {name!r} returned "
                               f"{type(response).__name__}, not a Response", name)
    return response


async def _send(request: Request, send) -> Response:
    record = _begin(request)
    try:
        response = await send(request) if request.is_async else send(request)
    except Exception as exc:
        _failed(record, exc)
        raise SendError(exc) from exc
    except BaseException as exc:  # cancelled: recorded, passed on as it is
        _failed(record, exc)
        raise
    _end(record, response)
    return response


# -- the runtime's HTTP cache, for external GETs ------------------------------------------
def _cache_applies(request: Request) -> bool:
    from . import mesh_client as mc

    return (request.method in ("GET", "HEAD") and not request.body and not request.mesh
            and (request.is_async or threading.get_ident() != mc._loop_thread))


async def _through_cache(request: Request, send) -> Response:
    """A fresh stored answer, else the send; a complete cacheable answer is offered to
    the store (``watt.cache``: the same store, rules and invalidation as mesh calls)."""
    import watt.cache

    from . import mesh_client as mc

    headers = request.headers.items()
    if request.is_async:
        hit = await watt.cache.lookup(request.method, request.url, headers)
    else:
        hit = mc.run_sync(watt.cache.lookup, request.method, request.url, headers)
    if hit is not None:
        status, pairs, body = hit
        return Response(status, pairs, body)
    response = await _send(request, send)
    if request.method != "GET" or not _storable(response):
        return response
    body = await response.read()
    await response.discard()
    watt.cache.store(request.method, request.url, headers, response.status,
                     response.headers.items(), body)
    return Response(response.status, response.headers, body)


def _storable(response: Response) -> bool:
    """Worth reading whole to offer to the store (the main side decides the rest)."""
    headers = response.headers
    length = headers.get("content-length")
    control = (headers.get("cache-control") or "").lower()
    if (response.status not in _CACHEABLE or headers.get("content-encoding") is not None
            or length is None or not length.isdigit() or int(length) > _cache["max_entry_size"]
            or "no-store" in control or "private" in control):
        return False
    # Something the store can keep it by: freshness, a validator, or httpCache.defaultTTL.
    return bool("max-age" in control or "public" in control or headers.get("expires")
                or headers.get("etag") or headers.get("last-modified")
                or _cache.get("default_ttl"))


def _begin(request: Request):
    """One send starts: count it; an external one gets its span, trace headers, timer."""
    request.attempt += 1
    observer = _observer
    if observer is None or request.mesh:
        return None  # a mesh call is observed by MeshCall itself
    record, extra = observer.client_begin(request.host, request.method, request.url)
    if request._injected is None:  # only headers the application did not set itself
        request._injected = {_text(k) for k, _ in extra if _text(k) not in request.headers}
    for name, value in extra:
        if _text(name) in request._injected:
            request.headers.set(_text(name), _text(value))
    return record


def _end(record, response: Response) -> None:
    if record is not None:
        _observer.client_end(record, response.status)


def _failed(record, exc: BaseException) -> None:
    if record is not None:
        if isinstance(exc, Exception):
            _observer.client_end(record, 0, f"{type(exc).__name__}: {exc}", exc=exc)
        else:
            _observer.client_end(record, 0, "cancelled")
