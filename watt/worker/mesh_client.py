"""``http://<id>.plt.local`` from inside a worker, over the channel.

:func:`install` runs before the application is imported.  It registers an
import hook so that when the application imports httpx, httpx's transports
route ``*.plt.local`` hosts to :class:`MeshCall` instead of opening a
socket; every other host goes to the network as usual.  (The remaining
clients — requests, urllib3, aiohttp, urllib — plug into the same
:class:`MeshCall`.)  The same hook points run the outbound pipeline
(``outbound.py``: interceptors, observation of external calls) for every host.

A mesh call is a stream this worker opens on its own channel: the main side
relays its frames to a worker of the target application.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import threading
from urllib.parse import unquote

from watt.channel import protocol as p
from watt.channel.endpoint import Channel, Stream

_channel: Channel | None = None
_links = None  # LinkTable: direct channels to other workers, set by bootstrap
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: int | None = None
_app_id: str | None = None
#: ``mesh.timeout`` from the config: used when a client sets no timeout.
_default_timeout: float | None = 30.0

#: observe.Observer of this worker: every mesh call carries the request id and
#: trace context of the request being served, and is counted and traced.
_observer = None

# Errors after the target received the request: the caller gets a response.
_ANSWERED = frozenset({"WATT_MESH_WORKER_DIED", "WATT_WORKER_DIED", "WATT_APP_UNHANDLED_ERROR",
                       "WATT_OVERLOADED"})  # a 503 with Retry-After


class MeshCallError(Exception):
    """The call could not complete; ``code`` is a stable WATT_ code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def install(channel: Channel, app_id: str, default_timeout: float | None = 30.0,
            links=None, observer=None) -> None:
    """Make this worker's HTTP clients reach ``*.plt.local`` over ``channel``
    (or over a direct link to the target's worker, when ``links`` has one)."""
    global _channel, _loop, _loop_thread, _app_id, _default_timeout, _links, _observer
    _channel = channel
    _observer = observer
    _links = links
    _loop = asyncio.get_running_loop()
    _loop_thread = threading.get_ident()
    _app_id = app_id
    _default_timeout = default_timeout
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    if not any(isinstance(f, _PatchFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchFinder())


_inflight = 0  # mesh calls of this worker waiting for their response


def waiting() -> bool:
    """True while a mesh call of this worker waits for its response."""
    return _inflight > 0


def read_queues():
    """``(queue id, wake-up fd)`` of every queue this worker receives frames on."""
    transport = _channel.transport if _channel is not None else None
    if getattr(transport, "recv_qid", None) is not None:
        yield transport.recv_qid, transport.wake_recv_fd
    if _links is not None:
        yield from _links.read_queues()


def is_mesh_host(host: str | None) -> bool:
    return p.mesh_app_id(host) is not None


class MeshCall:
    """One outgoing request over the channel, driven from the worker's loop."""

    def __init__(self) -> None:
        if _channel is None:
            raise MeshCallError("WATT_MESH_UNAVAILABLE",
                                "the mesh is only reachable from inside a Watt worker")
        self.stream: Stream | None = None
        self.done = False
        self._observed = None  # observe._MeshCall until the response starts
        self._retry: tuple | None = None  # the REQUEST frame, while it may be resent

    async def start(self, method: str, host: str, raw_path: bytes, headers,
                    body: bytes, more: bool, kind: str = "http",
                    subprotocols: tuple = ()) -> None:
        """Send the request head (and the first body bytes).

        ``headers`` are ``(name, value)`` pairs of bytes; a Host header and the
        headers this worker's current request propagates are added when absent.
        """
        path_bytes, _, query = raw_path.partition(b"?")
        hostname = host.split(":", 1)[0]
        extra = ()
        if _observer is not None:
            self._observed, extra = _observer.mesh_begin(
                p.mesh_app_id(hostname) or hostname, method or "GET", host, raw_path)
        flat = mesh_headers(host, headers, extra)
        scope = (kind, "1.1", method if kind == "http" else None,
                 "http" if kind == "http" else "ws",
                 unquote(path_bytes.decode("latin-1")) or "/", path_bytes or b"/", query, "",
                 flat, None, (hostname, 80), tuple(subprotocols) if kind != "http" else None)
        pieces = p.split_chunks(body)
        first = pieces[0]
        link = _links.pick(p.mesh_app_id(hostname)) if _links is not None else None
        self.stream = (link or _channel).open_stream()
        self.stream.charge(len(first))
        more_after_first = more or len(pieces) > 1
        request = (p.REQUEST, self.stream.sid, hostname, scope, first, more_after_first)
        self.stream.send(request)
        if not more_after_first:  # one frame: it can be resent if no worker took it
            self._retry = request
        if len(pieces) > 1:
            await self.send_body(body[len(first):], more)

    async def send_body(self, chunk: bytes, more: bool) -> None:
        await self.stream.send_data(p.BODY, chunk, more)

    async def response(self, timeout: float | None = None) -> tuple[int, list, bytes, bool]:
        """Wait for RESPONSE_START: ``(status, headers, first_body, more)``.

        A target worker that died after the request reached it gives a 502,
        as a gateway would; errors before that raise :class:`MeshCallError`.
        """
        try:
            status, headers, body, more = await self._response(timeout)
        except MeshCallError as exc:
            self._observe_end(0, exc.message, exc)
            raise
        self._observe_end(status)
        return status, headers, body, more

    def _observe_end(self, status: int, error: str | None = None,
                     exc: MeshCallError | None = None) -> None:
        if self._observed is not None:
            _observer.mesh_end(self._observed, status, error, exc=exc)
            self._observed = None

    async def _response(self, timeout: float | None) -> tuple[int, list, bytes, bool]:
        frame = await self._next(timeout)
        if frame[0] == p.ERROR and frame[2] == "WATT_NO_WORKER" and self._retry is not None:
            # The linked worker is stopping and did not take the request: the
            # main side picks a worker that is ready.
            self.stream.finish()
            self.stream = _channel.open_stream()
            self.stream.send((p.REQUEST, self.stream.sid) + self._retry[2:])
            self._retry = None
            frame = await self._next(timeout)
        self._retry = None
        if frame[0] == p.RESPONSE_START:
            _, _, status, headers, body, more = frame
            self._got(body, more)
            return status, p.pair_headers(headers), body, more
        if frame[0] == p.ERROR and frame[2] in _ANSWERED:
            # The target got the request and failed: answer as a gateway would.
            self.done = True
            self.stream.finish()
            status, headers, body = p.error_response(frame[2])
            return status, headers, body, False
        self._fail(frame)

    async def next_chunk(self, timeout: float | None = None) -> tuple[bytes, bool]:
        if self.done:
            return b"", False
        frame = await self._next(timeout)
        if frame[0] == p.RESPONSE_BODY:
            _, _, chunk, more = frame
            self._got(chunk, more)
            return chunk, more
        self._fail(frame)

    async def _next(self, timeout: float | None, use_default: bool = True,
                    spin: bool = True) -> tuple:
        global _inflight
        frame = self.stream.receive_nowait()
        if frame is not None:
            return frame
        if timeout is None and use_default:
            timeout = _default_timeout
        if spin:
            _inflight += 1
        try:
            if timeout is None:
                return await self.stream.receive()
            async with asyncio.timeout(timeout):
                return await self.stream.receive()
        except TimeoutError:
            self.cancel()
            raise MeshCallError("WATT_MESH_TIMEOUT", f"no response within {timeout} s") from None
        finally:
            if spin:
                _inflight -= 1

    def _got(self, chunk: bytes, more: bool) -> None:
        if more:
            self.stream.consumed(len(chunk))
        else:
            self.done = True
            self.stream.finish()

    def _fail(self, frame: tuple):
        self.done = True
        self.stream.finish()
        if frame[0] == p.ERROR:
            raise MeshCallError(frame[2], frame[3])
        raise MeshCallError("WATT_MESH_PROTOCOL", f"unexpected {p.describe(frame)}")

    def cancel(self) -> None:
        """Stop the call: the target app sees ``http.disconnect``."""
        if not self.done and self.stream is not None:
            self.done = True
            self.stream.send((p.CANCEL, self.stream.sid))
            self.stream.finish()


def mesh_headers(host: str, headers, extra=()) -> tuple:
    """Flat header tuple for a mesh request: the caller's headers, a Host, and
    the ``extra`` ones (request id, trace context) the caller did not set."""
    flat: list[bytes] = []
    names = set()
    for name, value in headers:
        name = bytes(name).lower()
        names.add(name)
        flat.append(name)
        flat.append(bytes(value))
    if b"host" not in names:
        flat[:0] = (b"host", host.encode("latin-1"))
    for name, value in extra:
        if name not in names:
            flat.append(name)
            flat.append(value)
    return tuple(flat)


def run_sync(coro_fn, *args):
    """Run a coroutine function on the worker's loop from another thread and wait."""
    if _loop is None:
        raise MeshCallError("WATT_MESH_UNAVAILABLE",
                            "the mesh is only reachable from inside a Watt worker")
    if threading.get_ident() == _loop_thread:
        raise MeshCallError(
            "WATT_MESH_SYNC_IN_LOOP",
            "a synchronous mesh call on the event loop's thread would block the loop that "
            "serves it; use an async client (httpx.AsyncClient) or call it from a thread",
        )
    return asyncio.run_coroutine_threadsafe(coro_fn(*args), _loop).result()


# -- import hook ---------------------------------------------------------------------
class _PatchFinder:
    """Applies a client patch right after that client's module is imported.

    A meta path finder needs only ``find_spec``; not subclassing
    ``importlib.abc.MetaPathFinder`` keeps importlib.abc (with importlib.resources,
    tempfile, zipfile, ...) out of every worker's start."""

    def invalidate_caches(self) -> None:
        """Nothing cached (``importlib.invalidate_caches`` calls it)."""

    def find_spec(self, name, path=None, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module, _original=original_exec, _patch=patch):
            _original(module)
            _patch(module)

        loader.exec_module = exec_module
        return spec


def _patcher(adapter: str):
    """Patch function for one client: ``watt/worker/<adapter>.py`` has ``patch(module)``."""

    def patch(module) -> None:
        importlib.import_module(f"{__package__}.{adapter}").patch(module)

    return patch


# Client module name -> its adapter.  requests goes through urllib3.
_PATCHES = {
    "httpx": _patcher("mesh_httpx"),
    "urllib3": _patcher("mesh_urllib3"),
    "urllib.request": _patcher("mesh_urllib"),
    "aiohttp": _patcher("mesh_aiohttp"),
    # Not a client: an application logging with loguru gets its lines captured.
    "loguru": lambda module: importlib.import_module(f"{__package__}.telemetry")
    .patch_loguru(module),
}
