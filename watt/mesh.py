"""``watt.mesh``: the explicit mesh API, for code running inside an application.

Zero-config clients (httpx, requests, urllib3, aiohttp, urllib) already reach
``http://<id>.plt.local``; this module is the lean path without an HTTP client
library in between, plus WebSockets between applications::

    import watt.mesh

    response = await watt.mesh.fetch("http://greeter.plt.local/hello")
    response = watt.mesh.fetch_sync("http://greeter.plt.local/hello")   # from a thread
    async with httpx.AsyncClient(transport=watt.mesh.transport()) as client: ...
    async with watt.mesh.websocket("ws://chat.plt.local/ws") as ws:
        await ws.send("hi"); print(await ws.receive())

It loads in a subinterpreter (standard library only; httpx only when
``transport()`` is called).  Failures raise :class:`MeshError` with a stable
``code``: ``WATT_MESH_UNKNOWN_APP``, ``WATT_NO_WORKER``, ``WATT_MESH_TIMEOUT``,
``WATT_MESH_UNAVAILABLE`` (not inside a Watt worker), ...
"""

from __future__ import annotations

from urllib.parse import urlsplit

from watt.channel import protocol as _p
from watt.channel.endpoint import StreamClosed
from watt.channel.message import Response
from watt.worker import mesh_client as _mc
from watt.worker import outbound as _out

__all__ = ["MeshError", "MeshResponse", "MeshStream", "MeshWebSocket", "fetch", "fetch_sync",
           "stream", "transport", "sync_transport", "websocket"]

MeshError = _mc.MeshCallError


class MeshResponse(Response):
    """A complete mesh response: ``status``, ``headers`` (pairs of bytes), ``body``,
    ``text``, ``json()``, ``header(name)``."""

    __slots__ = ()


def _target(url: str, schemes: tuple[str, ...]) -> tuple[str, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not _p.mesh_app_id(parts.hostname):
        raise MeshError("WATT_MESH_BAD_URL",
                        f"{url!r} is not a mesh URL ({schemes[0]}://<application-id>.plt.local/...)")
    path = (parts.path or "/").encode()
    if parts.query:
        path += b"?" + parts.query.encode()
    return parts.netloc, path


def _header_pairs(headers) -> list:
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(k.encode("latin-1") if isinstance(k, str) else k,
             v.encode("latin-1") if isinstance(v, str) else v) for k, v in items]


async def fetch(url: str, *, method: str = "GET", headers=None, body: bytes | str = b"",
                timeout: float | None = None) -> MeshResponse:
    """Call another application and read the whole response (async form)."""
    host, path = _target(url, ("http",))
    if isinstance(body, str):
        body = body.encode()
    pairs = _header_pairs(headers)
    if body and not any(k.lower() == b"content-length" for k, _ in pairs):
        pairs.append((b"content-length", str(len(body)).encode()))
    if not _out.intercepting():
        return await _fetch(host, path, method.upper(), pairs, body, timeout)

    async def send(request: _out.Request) -> _out.Response:
        response = await _fetch(host, path, request.method,
                                request.headers.raw() if request.headers.touched else pairs,
                                body, request.timeout)
        return _out.Response(response.status, response.headers, response.body,
                             native=response)

    return await _out.call_async(
        _out.Request(method, url, pairs, body, timeout, True), send,
        lambda response: MeshResponse(response.status, response.headers.raw(),
                                      response.body or b""))


async def _fetch(host: str, path: bytes, method: str, pairs, body: bytes,
                 timeout: float | None) -> MeshResponse:
    call = _mc.MeshCall()
    await call.start(method, host, path, pairs, body, False)
    status, response_headers, chunk, more = await call.response(timeout)
    if not more:
        return MeshResponse(status, response_headers, chunk)
    chunks = [chunk]
    while more:
        chunk, more = await call.next_chunk(timeout)
        chunks.append(chunk)
    return MeshResponse(status, response_headers, b"".join(chunks))


class MeshStream:
    """A mesh call whose bodies stream both ways (see :func:`stream`)."""

    __slots__ = ("_call",)

    def __init__(self, call: _mc.MeshCall) -> None:
        self._call = call

    async def send(self, chunk: bytes, more: bool = True) -> bool:
        """Send request body bytes (``more=False`` ends the body), waiting for the
        target's credit.  False when the target answered or went away before reading
        the whole body: stop sending, the response says why."""
        try:
            await self._call.send_body(chunk, more)
        except StreamClosed:
            return False
        return True

    async def response(self, timeout: float | None = None) -> tuple[int, list, bytes, bool]:
        """``(status, headers, first body bytes, more)`` once the response starts."""
        return await self._call.response(timeout)

    async def receive(self, timeout: float | None = None) -> tuple[bytes, bool]:
        """The next response body bytes: ``(chunk, more)``; ``(b"", False)`` at the end."""
        return await self._call.next_chunk(timeout)

    def cancel(self) -> None:
        """Stop the call (the target sees ``http.disconnect``); harmless once done."""
        self._call.cancel()


async def stream(url: str, *, method: str = "GET", headers=None, body: bytes = b"",
                 more: bool = False) -> MeshStream:
    """Start a call without buffering either body: the request head (and ``body``) is
    sent now; with ``more=True`` the rest follows through :meth:`MeshStream.send`, then
    :meth:`MeshStream.response` and :meth:`MeshStream.receive` read the answer piece by
    piece, with the mesh's flow control (memory stays bounded for any size)."""
    host, path = _target(url, ("http",))
    call = _mc.MeshCall()
    await call.start(method.upper(), host, path, _header_pairs(headers), body, more)
    return MeshStream(call)


def fetch_sync(url: str, *, method: str = "GET", headers=None, body: bytes | str = b"",
               timeout: float | None = None) -> MeshResponse:
    """:func:`fetch` for synchronous code; call it from a thread, not the event loop's."""
    return _mc.run_sync(_fetch_kw, url, method, headers, body, timeout)


async def _fetch_kw(url, method, headers, body, timeout):
    return await fetch(url, method=method, headers=headers, body=body, timeout=timeout)


def transport():
    """An ``httpx.AsyncBaseTransport`` that sends every request over the mesh."""
    import httpx

    from watt.worker import mesh_httpx

    mesh_httpx.patch(httpx)
    return mesh_httpx.AsyncMeshTransport()


def sync_transport():
    """An ``httpx.BaseTransport`` (for ``httpx.Client``) that uses the mesh."""
    import httpx

    from watt.worker import mesh_httpx

    mesh_httpx.patch(httpx)
    return mesh_httpx.SyncMeshTransport()


class MeshWebSocket:
    """A WebSocket to another application; messages are ``str`` or ``bytes``."""

    def __init__(self, url: str, subprotocols=(), headers=None) -> None:
        self.url = url
        self.subprotocols = tuple(subprotocols)
        self.headers = _header_pairs(headers)
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._call: _mc.MeshCall | None = None

    async def connect(self, timeout: float | None = None) -> MeshWebSocket:
        host, path = _target(self.url, ("ws", "http"))
        self._call = call = _mc.MeshCall()
        await call.start("GET", host, path, self.headers, b"", False, kind="websocket",
                         subprotocols=self.subprotocols)
        frame = await call._next(timeout)
        if frame[0] == _p.WS_ACCEPT:
            self.subprotocol = frame[2]
            return self
        call.done = True
        call.stream.finish()
        if frame[0] == _p.WS_CLOSE:
            raise MeshError("WATT_MESH_WS_REJECTED",
                            f"{self.url} refused the WebSocket (close code {frame[2]})")
        call._fail(frame)

    async def send(self, message: str | bytes) -> None:
        stream = self._open().stream
        await stream.wait_credit()
        if isinstance(message, str):
            stream.charge(len(message.encode()))
            stream.send((_p.WS_MESSAGE, stream.sid, message, None))
        else:
            stream.charge(len(message))
            stream.send((_p.WS_MESSAGE, stream.sid, None, bytes(message)))

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message; raises ``MeshError(WATT_MESH_WS_CLOSED)`` once closed."""
        call = self._open()
        frame = await call._next(timeout, use_default=False, spin=False)
        if frame[0] == _p.WS_MESSAGE:
            text, data = frame[2], frame[3]
            call.stream.consumed(len(data) if data is not None else len(text.encode()))
            return text if text is not None else data
        call.done = True
        call.stream.finish()
        if frame[0] == _p.WS_CLOSE:
            self.close_code, self.close_reason = frame[2], frame[3] or ""
            raise MeshError("WATT_MESH_WS_CLOSED",
                            f"closed by {self.url} with code {frame[2]} {frame[3] or ''}".strip())
        call._fail(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        call = self._call
        if call is not None and not call.done:
            call.stream.send((_p.WS_CLOSE, call.stream.sid, code, reason))
            call.done = True
            call.stream.finish()
            self.close_code = code

    def _open(self) -> _mc.MeshCall:
        if self._call is None or self._call.done:
            raise MeshError("WATT_MESH_WS_CLOSED", f"the WebSocket to {self.url} is not open")
        return self._call

    async def __aenter__(self) -> MeshWebSocket:
        if self._call is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def websocket(url: str, subprotocols=(), headers=None) -> MeshWebSocket:
    """``async with watt.mesh.websocket("ws://app.plt.local/path") as ws: ...``

    ``headers`` (a mapping or pairs) go with the handshake, as a client's would."""
    return MeshWebSocket(url, subprotocols, headers)
