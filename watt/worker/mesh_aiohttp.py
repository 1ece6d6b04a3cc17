"""aiohttp on the mesh: ``ClientSession`` requests to ``*.plt.local`` go over the channel.

aioresponses replaces ``ClientSession._request`` wholesale, so it must redo
(or drop) base URLs, params, cookies, auth, redirects, ``raise_for_status``,
middlewares and timeouts.  We patch one level lower, at the two points where
``_request`` touches the network: ``BaseConnector.connect`` returns a
:class:`MeshConnection` (no socket, no DNS) for a mesh host, and
``ClientRequest.send`` on it sends the request as a :class:`MeshCall`.
aiohttp's own ``ClientResponse.start`` then reads the head from our
protocol, and the body is a real ``StreamReader`` fed from the call with
backpressure, so ``read()/text()/json()``, ``content.iter_chunked()`` and
``async with`` behave as over TCP.

Timeouts: ``sock_read`` is the call's read timeout; ``total`` needs nothing
(aiohttp cancels the task, we cancel the call).  Errors carry the WATT code:
``ClientConnectorError`` when no application got the request,
``SocketTimeoutError`` for ``WATT_MESH_TIMEOUT``, ``ServerDisconnectedError``
before the head, ``ClientPayloadError`` mid-body.  Not covered: WebSockets,
request ``compress=``, br/zstd response decoding (gzip/deflate are decoded).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import zlib
from types import SimpleNamespace

from watt.channel.endpoint import StreamClosed

from . import mesh_client as mc
from . import outbound as out
from .mesh_urllib import reason_phrase
from .mesh_urllib3 import NOT_DELIVERED


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")  # as aiohttp's own parser does


class _BodyWriter:
    """The stream writer a Payload writes into; the first chunk rides in the REQUEST frame."""

    def __init__(self, head: tuple) -> None:
        self.head = head
        self.call: mc.MeshCall | None = None  # opened with the first frame
        self.held: bytes | None = None
        self.output_size = 0

    async def _start(self, body: bytes, more: bool) -> None:
        self.call = mc.MeshCall()
        await self.call.start(*self.head, body, more)

    async def write(self, chunk) -> None:
        chunk = bytes(chunk)
        if not chunk:
            return
        self.output_size += len(chunk)
        if self.held is None and self.call is None:
            self.held = chunk
            return
        if self.call is None:
            await self._start(self.held, True)
        await self.call.send_body(chunk, True)

    async def write_eof(self, chunk: bytes = b"") -> None:
        await self.write(chunk)
        if self.call is None:
            await self._start(self.held or b"", False)
        else:
            await self.call.send_body(b"", False)

    async def drain(self) -> None:
        return None


class _Protocol:
    """What ClientResponse and StreamReader use of a connection's protocol."""

    upgraded = False

    def __init__(self, aiohttp, req) -> None:
        self.aiohttp, self.req = aiohttp, req
        self.call: mc.MeshCall | None = None
        self.pump: asyncio.Task | None = None
        self.params: dict = {}
        self.connected = True
        self._reading_paused = False
        self._resume = asyncio.Event()
        self._resume.set()

    def set_response_params(self, **params) -> None:
        self.params = params

    def pause_reading(self) -> None:
        self._reading_paused = True
        self._resume.clear()

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False
        self._resume.set()

    def error(self, exc: mc.MeshCallError, mid_body: bool = False) -> Exception:
        a = self.aiohttp
        if exc.code == "WATT_MESH_TIMEOUT":
            return getattr(a, "SocketTimeoutError", a.ServerTimeoutError)(str(exc))
        if mid_body:
            return a.ClientPayloadError(f"Response payload is not completed: {exc}")
        if exc.code in NOT_DELIVERED:
            return a.ClientConnectorError(self.req.connection_key, OSError(None, str(exc)))
        return a.ServerDisconnectedError(str(exc))

    async def read(self):
        """The response head, as ``ClientResponse.start`` expects: ``(message, payload)``."""
        timeout = self.params.get("read_timeout")
        try:
            status, pairs, first, more = await self.call.response(timeout)
        except mc.MeshCallError as exc:
            raise self.error(exc) from None
        except asyncio.CancelledError:
            self.call.cancel()
            raise
        from multidict import CIMultiDict, CIMultiDictProxy

        a = self.aiohttp
        headers = CIMultiDictProxy(CIMultiDict((_text(k), _text(v)) for k, v in pairs))
        content = a.StreamReader(self, self.params.get("read_bufsize") or 2**16,
                                 timer=self.params.get("timer"),
                                 loop=asyncio.get_running_loop())
        decoder = None
        if (self.params.get("auto_decompress", True)
                and headers.get("Content-Encoding", "").lower() in ("gzip", "deflate")):
            decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header
        self.pump = asyncio.get_running_loop().create_task(
            self._pump(content, first, more, timeout, decoder))
        message = SimpleNamespace(version=a.HttpVersion11, code=status,
                                  reason=reason_phrase(status), headers=headers,
                                  raw_headers=tuple(pairs), should_close=False,
                                  compression=None, upgrade=False, chunked=False)
        return message, content

    async def _pump(self, content, chunk: bytes, more: bool, timeout, decoder) -> None:
        try:
            while True:
                if decoder is not None:
                    chunk = decoder.decompress(chunk) + (b"" if more else decoder.flush())
                if chunk:
                    content.feed_data(chunk)
                if not more:
                    break
                await self._resume.wait()  # the reader's buffer is full: stop pulling
                chunk, more = await self.call.next_chunk(timeout)
            content.feed_eof()
        except mc.MeshCallError as exc:
            content.set_exception(self.error(exc, mid_body=True))
        except Exception as exc:  # a bad gzip stream: fail the reader, never leave it hanging
            content.set_exception(self.aiohttp.ClientPayloadError(f"{type(exc).__name__}: {exc}"))
            self.call.cancel()

    def close(self) -> None:
        self.connected = False
        if self.pump is not None and not self.pump.done():
            self.pump.cancel()
        if self.call is not None:
            self.call.cancel()


class MeshConnection:
    """Stands in for aiohttp's ``Connection``: one MeshCall instead of a pooled socket."""

    transport = None

    def __init__(self, aiohttp, req) -> None:
        self.protocol = _Protocol(aiohttp, req)
        self._callbacks: list = []  # e.g. the session's total-timeout handle

    @property
    def closed(self) -> bool:
        return not self.protocol.connected

    def add_callback(self, callback) -> None:
        if callback is not None:
            self._callbacks.append(callback)

    def release(self) -> None:
        self.close()  # a mesh call is not reused; an unread rest is dropped

    def close(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()
        self.protocol.close()


def patch(aiohttp) -> None:
    if getattr(aiohttp, "_watt_mesh", False):
        return
    aiohttp._watt_mesh = True
    original_connect = aiohttp.BaseConnector.connect
    original_send = aiohttp.ClientRequest.send
    has_stream_writer = "stream_writer" in inspect.signature(aiohttp.ClientResponse).parameters

    async def connect(self, req, *args, **kwargs):
        if mc.is_mesh_host(req.url.host):
            return MeshConnection(aiohttp, req)
        return await original_connect(self, req, *args, **kwargs)

    async def send(self, conn):
        if not isinstance(conn, MeshConnection):
            return await original_send(self, conn)
        headers = tuple((k.lower().encode(), v.encode()) for k, v in self.headers.items())
        host = self.headers.get("Host") or self.url.host
        writer = _BodyWriter((self.method, host, self.url.raw_path_qs.encode(), headers))
        try:
            if self.body:
                await self.body.write(writer)
            await writer.write_eof()
        except StreamClosed:
            pass  # the target answered or failed early: read() reports which
        except BaseException:
            if writer.call is not None:
                writer.call.cancel()
            raise
        finally:
            conn.protocol.call = writer.call
        self.response = _client_response(self, writer, has_stream_writer)
        return self.response

    aiohttp.BaseConnector.connect = connect
    aiohttp.ClientRequest.send = send
    _patch_session(aiohttp, has_stream_writer)


def _client_response(req, writer, has_stream_writer: bool):
    """The ClientResponse ``ClientRequest.send`` would make, for a request already sent."""
    extra = {"stream_writer": writer} if has_stream_writer else {}
    return req.response_class(
        req.method, req.original_url, writer=None, continue100=None, timer=req._timer,
        request_info=req.request_info, traces=req._traces, loop=req.loop,
        session=req._session, **extra)


class _Answer:
    """Stands in for a MeshCall whose whole response is already known (an
    interceptor's own Response)."""

    done = True

    def __init__(self, status: int, pairs: list, body: bytes) -> None:
        self.reply = (status, pairs, body, False)

    async def response(self, timeout=None):
        return self.reply

    async def next_chunk(self, timeout=None):
        return b"", False

    def cancel(self) -> None:
        pass


def _payload_bytes(aiohttp, body) -> bytes | None:
    """The request body when it can be sent again, else None (a stream)."""
    if body is None or getattr(body, "size", None) == 0:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, aiohttp.payload.BytesPayload):
        return bytes(body._value)
    return None


def _patch_session(aiohttp, has_stream_writer: bool) -> None:
    """Every session request through the outbound pipeline, as the outermost client
    middleware (per redirect hop, around the session's own middlewares); proxies
    from HTTP_PROXY/HTTPS_PROXY/NO_PROXY for external hosts even without
    ``trust_env``, as the other clients do, never for ``*.plt.local``."""
    from aiohttp.helpers import get_env_proxy_for_url

    original = aiohttp.ClientSession._request

    async def middleware(req, handler):
        request = out.Request(req.method, str(req.url), req.headers.items(),
                              _payload_bytes(aiohttp, req.body), None, True)

        async def send(r: out.Request) -> out.Response:
            if r.headers.touched:
                req.headers.clear()
                req.headers.extend(r.headers.items())
            if r.timeout is None:
                response = await handler(req)
            else:
                async with asyncio.timeout(r.timeout):
                    response = await handler(req)
            return out.Response(response.status, response.headers.items(), None,
                                native=response, discard=response.close, read=response.read)

        async def build(response: out.Response):
            conn = MeshConnection(aiohttp, req)
            conn.protocol.call = _Answer(response.status, response.headers.raw(),
                                         response.body or b"")
            writer = _BodyWriter(())
            native = _client_response(req, writer, has_stream_writer)
            await native.start(conn)
            return native

        return await out.call_async(request, send, build)

    async def _request(self, method, str_or_url, **kwargs):
        url = self._build_url(str_or_url)
        if out.wanted(url.host):
            own = kwargs.get("middlewares")
            kwargs["middlewares"] = (middleware, *(self._middlewares if own is None else own))
        if kwargs.get("proxy") is None and not self._trust_env and not mc.is_mesh_host(url.host):
            with contextlib.suppress(LookupError):
                kwargs["proxy"], kwargs["proxy_auth"] = get_env_proxy_for_url(url)
        return await original(self, method, str_or_url, **kwargs)

    aiohttp.ClientSession._request = _request
