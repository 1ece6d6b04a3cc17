"""``http://<id>.plt.local`` from inside a worker, over the channel.

:func:`install` runs before the application is imported.  It registers an
import hook so that when the application imports httpx, httpx's transports
route ``*.plt.local`` hosts to :class:`MeshCall` instead of opening a
socket; every other host goes to the network as usual.  (The remaining
clients — requests, urllib3, aiohttp, urllib — plug into the same
:class:`MeshCall`.)

A mesh call is a stream this worker opens on its own channel: the main side
relays its frames to a worker of the target application.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.util
import sys
import threading
from urllib.parse import unquote

from watt.channel import protocol as p
from watt.channel.endpoint import Channel, Stream

_channel: Channel | None = None
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: int | None = None
_app_id: str | None = None


class MeshCallError(Exception):
    """The call could not complete; ``code`` is a stable WATT_ code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def install(channel: Channel, app_id: str) -> None:
    """Make this worker's HTTP clients reach ``*.plt.local`` over ``channel``."""
    global _channel, _loop, _loop_thread, _app_id
    _channel = channel
    _loop = asyncio.get_running_loop()
    _loop_thread = threading.get_ident()
    _app_id = app_id
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    if not any(isinstance(f, _PatchFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchFinder())


def is_mesh_host(host: str | None) -> bool:
    return p.mesh_app_id(host) is not None


class MeshCall:
    """One outgoing request over the channel, driven from the worker's loop."""

    def __init__(self) -> None:
        if _channel is None:
            raise MeshCallError("WATT_MESH_UNAVAILABLE",
                                "the mesh is only reachable from inside a Watt worker")
        self.stream: Stream = _channel.open_stream()
        self.done = False

    async def start(self, method: str, host: str, raw_path: bytes, headers: tuple,
                    body: bytes, more: bool) -> None:
        path_bytes, _, query = raw_path.partition(b"?")
        hostname = host.split(":", 1)[0]
        scope = p.encode_scope({
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path_bytes.decode("latin-1")) or "/",
            "raw_path": path_bytes or b"/",
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": None,
            "server": (hostname, 80),
        })
        pieces = p.split_chunks(body)
        first = pieces[0]
        self.stream.charge(len(first))
        more_after_first = more or len(pieces) > 1
        self.stream.send((p.REQUEST, self.stream.sid, hostname, scope, first, more_after_first))
        if len(pieces) > 1:
            await self.send_body(body[len(first):], more)

    async def send_body(self, chunk: bytes, more: bool) -> None:
        await self.stream.send_data(p.BODY, chunk, more)

    async def response(self, timeout: float | None = None) -> tuple[int, list, bytes, bool]:
        """Wait for RESPONSE_START: ``(status, headers, first_body, more)``."""
        frame = await self._next(timeout)
        if frame[0] == p.RESPONSE_START:
            _, _, status, headers, body, more = frame
            self._got(body, more)
            return status, p.pair_headers(headers), body, more
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

    async def _next(self, timeout: float | None) -> tuple:
        if timeout is None:
            return await self.stream.receive()
        try:
            return await asyncio.wait_for(self.stream.receive(), timeout)
        except TimeoutError:
            self.cancel()
            raise MeshCallError("WATT_MESH_TIMEOUT", f"no response within {timeout} s") from None

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
        if not self.done:
            self.done = True
            self.stream.send((p.CANCEL, self.stream.sid))
            self.stream.finish()


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
class _PatchFinder(importlib.abc.MetaPathFinder):
    """Applies a client patch right after that client's module is imported."""

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


def _patch_httpx(httpx) -> None:
    from . import mesh_httpx

    mesh_httpx.patch(httpx)


_PATCHES = {"httpx": _patch_httpx}
