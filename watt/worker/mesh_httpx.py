"""httpx on the mesh: its transports send ``*.plt.local`` requests as MeshCalls.

The same two transport methods run the outbound pipeline (``outbound.py``):
interceptors around every request, mesh or external, and observation of
external ones; with no interceptors a mesh request skips it.
"""

from __future__ import annotations

from watt.channel.endpoint import StreamClosed

from . import mesh_client as mc
from . import outbound as out


def _timeout(request) -> float | None:
    return (request.extensions.get("timeout") or {}).get("read")


def _error(httpx, request, exc: mc.MeshCallError):
    if exc.code == "WATT_MESH_TIMEOUT":
        return httpx.ReadTimeout(str(exc), request=request)
    return httpx.ConnectError(str(exc), request=request)


def _request_parts(request) -> tuple[str, str, bytes, tuple]:
    headers = tuple(request.headers.raw)
    return request.method, request.url.netloc.decode("ascii"), request.url.raw_path, headers


def patch(httpx) -> None:
    if getattr(httpx, "_watt_mesh", False):
        return
    httpx._watt_mesh = True

    class AsyncMeshStream(httpx.AsyncByteStream):
        def __init__(self, call, first, more, timeout):
            self.call, self.first, self.more, self.timeout = call, first, more, timeout

        async def __aiter__(self):
            if self.first:
                yield self.first
            more = self.more
            while more:
                chunk, more = await self.call.next_chunk(self.timeout)
                if chunk:
                    yield chunk

        async def aclose(self):
            self.call.cancel()

    class SyncMeshStream(httpx.SyncByteStream):
        def __init__(self, call, first, more, timeout):
            self.call, self.first, self.more, self.timeout = call, first, more, timeout

        def __iter__(self):
            if self.first:
                yield self.first
            more = self.more
            while more:
                chunk, more = mc.run_sync(self.call.next_chunk, self.timeout)
                if chunk:
                    yield chunk

        def close(self):
            if mc._loop is not None and not self.call.done:
                mc._loop.call_soon_threadsafe(self.call.cancel)

    async def mesh_async(request):
        method, host, raw_path, headers = _request_parts(request)
        timeout = _timeout(request)
        try:
            call = mc.MeshCall()
            if isinstance(request.stream, httpx.ByteStream):
                await call.start(method, host, raw_path, headers, request.content, False)
            else:
                await call.start(method, host, raw_path, headers, b"", True)
                try:
                    async for chunk in request.stream:
                        if chunk:
                            await call.send_body(chunk, True)
                    await call.send_body(b"", False)
                except StreamClosed:
                    pass  # answered before reading it all: the response says why
            status, pairs, first, more = await call.response(timeout)
        except mc.MeshCallError as exc:
            raise _error(httpx, request, exc) from None
        return httpx.Response(status, headers=pairs,
                              stream=AsyncMeshStream(call, first, more, timeout),
                              extensions={"http_version": b"HTTP/1.1"})

    async def start_sync_call(method, host, raw_path, headers, body, more):
        call = mc.MeshCall()
        await call.start(method, host, raw_path, headers, body, more)
        return call

    def mesh_sync(request):
        method, host, raw_path, headers = _request_parts(request)
        timeout = _timeout(request)
        try:
            if isinstance(request.stream, httpx.ByteStream):
                call = mc.run_sync(start_sync_call, method, host, raw_path, headers,
                                   request.content, False)
            else:
                call = mc.run_sync(start_sync_call, method, host, raw_path, headers, b"", True)
                try:
                    for chunk in request.stream:
                        if chunk:
                            mc.run_sync(call.send_body, chunk, True)
                    mc.run_sync(call.send_body, b"", False)
                except StreamClosed:
                    pass  # answered before reading it all: the response says why
            status, pairs, first, more = mc.run_sync(call.response, timeout)
        except mc.MeshCallError as exc:
            raise _error(httpx, request, exc) from None
        return httpx.Response(status, headers=pairs,
                              stream=SyncMeshStream(call, first, more, timeout),
                              extensions={"http_version": b"HTTP/1.1"})

    original_async = httpx.AsyncHTTPTransport.handle_async_request
    original_sync = httpx.HTTPTransport.handle_request

    def outbound_request(request, is_async: bool) -> out.Request:
        body = request.content if isinstance(request.stream, httpx.ByteStream) else None
        return out.Request(request.method, str(request.url), request.headers.raw, body,
                           _timeout(request), is_async)

    def apply(request, req: out.Request) -> None:
        """What the interceptors changed, back onto httpx's request."""
        if req.headers.touched:
            request.headers = httpx.Headers(req.headers.items())
        if req.timeout is not None and req.timeout != _timeout(request):
            request.extensions = {**request.extensions, "timeout": dict.fromkeys(
                ("connect", "read", "write", "pool"), req.timeout)}

    def build(request, response: out.Response):
        return httpx.Response(response.status, headers=response.headers.items(),
                              content=response.body or b"", request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    def wrap(response) -> out.Response:
        if isinstance(response.stream, httpx.AsyncByteStream):
            close, read = response.aclose, response.aread
        else:
            close, read = response.close, response.read
        return out.Response(response.status_code, response.headers.multi_items(), None,
                            native=response, discard=close, read=read)

    async def via_pipeline_async(transport, request, mesh: bool):
        async def send(req):
            apply(request, req)
            return wrap(await mesh_async(request) if mesh or req.mesh
                        else await original_async(transport, request))

        return await out.call_async(outbound_request(request, True), send,
                                    lambda response: build(request, response))

    def via_pipeline_sync(transport, request, mesh: bool):
        def send(req):
            apply(request, req)
            return wrap(mesh_sync(request) if mesh or req.mesh
                        else original_sync(transport, request))

        return out.call_sync(outbound_request(request, False), send,
                             lambda response: build(request, response))

    async def handle_async_request(self, request):
        if out.wanted(request.url.host):
            return await via_pipeline_async(self, request, False)
        if mc.is_mesh_host(request.url.host):
            return await mesh_async(request)
        return await original_async(self, request)

    def handle_request(self, request):
        if out.wanted(request.url.host):
            return via_pipeline_sync(self, request, False)
        if mc.is_mesh_host(request.url.host):
            return mesh_sync(request)
        return original_sync(self, request)

    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request
    httpx.HTTPTransport.handle_request = handle_request

    class _AsyncMeshTransport(httpx.AsyncBaseTransport):
        """Every request over the mesh (``watt.mesh.transport()``)."""

        async def handle_async_request(self, request):
            if out.intercepting():
                return await via_pipeline_async(self, request, True)
            return await mesh_async(request)

    class _SyncMeshTransport(httpx.BaseTransport):
        """Every request over the mesh, from a thread (``watt.mesh.sync_transport()``)."""

        def handle_request(self, request):
            if out.intercepting():
                return via_pipeline_sync(self, request, True)
            return mesh_sync(request)

    global AsyncMeshTransport, SyncMeshTransport
    AsyncMeshTransport = _AsyncMeshTransport
    SyncMeshTransport = _SyncMeshTransport


AsyncMeshTransport = None
SyncMeshTransport = None
