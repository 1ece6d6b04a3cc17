"""A gateway in front of other applications: ``kind: "gateway"``.

Routes by path prefix to other applications over the mesh, e.g. ``/api`` ->
``svc`` (the prefix cut off by default) and ``/`` -> ``web``; the longest
matching prefix wins, on segment boundaries (``/api`` takes ``/api`` and
``/api/x``, not ``/apix``).  Bodies stream both ways with the mesh's flow
control (:func:`watt.mesh.stream`), never buffered whole.  WebSockets are
proxied too (:func:`watt.mesh.websocket`: messages both ways, close codes).

Options come from ``watt.gateway.json`` in the application's folder (its
presence is also how the kind is detected)::

    {
      "routes": [
        {"prefix": "/api", "to": "svc",
         "stripPrefix": true,
         "requestHeaders": {"set": {"x-via": "gateway"}, "add": {}, "remove": ["cookie"]},
         "responseHeaders": {"remove": ["server"]},
         "openapi": true},
        {"prefix": "/", "to": "web"}
      ],
      "openapi": {"path": "/openapi.json", "title": "My API", "version": "1.0.0"}
    }

Route keys: ``prefix`` and ``to`` (an application id) required;
``stripPrefix`` (default true), ``requestHeaders`` / ``responseHeaders``
(``remove`` a list of names, then ``set`` replaces, then ``add`` appends),
``openapi`` (default true: the app's ``/openapi.json`` is merged when it
publishes one; a path such as ``"/schema/openapi.json"`` for Litestar; false:
left out).  ``openapi: false`` at the top turns the merged document off.
The request gets ``x-forwarded-prefix`` when its prefix was cut off.

``GET <openapi.path>`` fetches the document of every routed application
over the mesh at each call, keeps those that answer 200 with a JSON object,
and answers their merge (``capabilities/gateway_config.py``: paths prefixed,
components merged with collisions renamed).

A mistake in the file fails the start with ``WATT_GATEWAY_CONFIG_INVALID``
naming the file and the key; a path no route takes is a 404
``WATT_GATEWAY_NO_ROUTE``; an unreachable target a 502/503/504 with the mesh's
code in a JSON body.  Standard library and ``watt.mesh`` only: it runs in a
subinterpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from watt.capability import Capability

from .gateway_config import (
    CONFIG_FILE,
    GatewayConfig,
    Route,
    merge_openapi,
    parse_config,
    read_config,
)

_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                         b"transfer-encoding", b"te", b"trailer", b"upgrade",
                         b"proxy-authenticate", b"proxy-authorization", b"host"})
_STATUS = {"WATT_NO_WORKER": 503, "WATT_MESH_TIMEOUT": 504}


def detect(path: str) -> dict | None:
    """A folder with ``watt.gateway.json`` (an explicit statement, so priority 30)."""
    return {} if os.path.isfile(os.path.join(path, CONFIG_FILE)) else None


def load(options: dict) -> Gateway:
    """The routes from the application's ``gateway`` config key, else its
    watt.gateway.json."""
    if options.get("gateway") is not None:
        return Gateway(parse_config(options["gateway"], "watt.json (gateway)", options.get("id")))
    return Gateway(read_config(options.get("path") or sys.path[0], options.get("id")))


class Gateway:
    """The ASGI application: one :class:`GatewayConfig`, requests relayed over the mesh."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if kind == "http" and path == self.config.openapi_path \
                and scope["method"] in ("GET", "HEAD"):
            await self.openapi(scope, send)
            return
        route = self.config.route(path)
        if route is None:
            if kind == "http":
                await _error(send, 404, "WATT_GATEWAY_NO_ROUTE", f"no route for {path}")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if kind == "http":
            await self.http(route, scope, receive, send)
        elif kind == "websocket":
            await self.websocket(route, scope, receive, send)

    def _request(self, route: Route, scope: dict) -> tuple[str, list]:
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = route.target_path(raw.partition(b"?")[0])
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        if route.strip and route.prefix != "/":
            headers = [(k, v) for k, v in headers if k.lower() != b"x-forwarded-prefix"]
            headers.append((b"x-forwarded-prefix", route.prefix.encode()))
        headers = route.request.apply(headers)
        return f"http://{route.to}.plt.local{target.decode('latin-1')}", headers

    async def http(self, route: Route, scope: dict, receive, send) -> None:
        import watt.mesh

        url, headers = self._request(route, scope)
        first = await receive()
        if first["type"] == "http.disconnect":
            return
        more = first.get("more_body", False)
        try:
            call = await watt.mesh.stream(url, method=scope["method"], headers=headers,
                                          body=first.get("body", b""), more=more)
        except watt.mesh.MeshError as exc:
            await _error(send, _STATUS.get(exc.code, 502), exc.code, exc.message)
            return
        try:
            while more:  # the upload, piece by piece as the client sends it
                message = await receive()
                if message["type"] == "http.disconnect":
                    call.cancel()
                    return
                more = message.get("more_body", False)
                if not await call.send(message.get("body", b""), more):
                    break  # answered before reading it all: the response says why
            # From here on the client only says whether it goes away: then the call is
            # cancelled (the app sees http.disconnect) and this task stops waiting.
            current = asyncio.current_task()
            watcher = asyncio.ensure_future(_until_disconnect(receive, call, current))
            try:
                await self._relay_response(route, call, send)
            except asyncio.CancelledError:
                if not watcher.done() or watcher.cancelled() or current.uncancel() > 0:
                    raise
            finally:
                watcher.cancel()
        finally:
            call.cancel()

    async def _relay_response(self, route: Route, call, send) -> None:
        import watt.mesh

        try:
            status, response_headers, chunk, more = await call.response()
        except watt.mesh.MeshError as exc:
            await _error(send, _STATUS.get(exc.code, 502), exc.code, exc.message)
            return
        response_headers = route.response.apply(
            [(k, v) for k, v in response_headers if k.lower() not in _HOP_BY_HOP])
        await send({"type": "http.response.start", "status": status,
                    "headers": response_headers})
        await send({"type": "http.response.body", "body": chunk, "more_body": more})
        while more:  # the download, with the mesh's credits as back-pressure
            chunk, more = await call.receive()
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def websocket(self, route: Route, scope: dict, receive, send) -> None:
        import watt.mesh

        url, headers = self._request(route, scope)
        if (await receive())["type"] != "websocket.connect":
            return
        # The handshake's own headers are the mesh's business (it makes its own).
        headers = [(k, v) for k, v in headers if not k.lower().startswith(b"sec-websocket-")]
        upstream = watt.mesh.websocket("ws" + url[4:], scope.get("subprotocols") or (), headers)
        try:
            await upstream.connect()
        except watt.mesh.MeshError:
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def client_to_app() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(message.get("code", 1000))
                    return
                data = message.get("text")
                await upstream.send(data if data is not None else message.get("bytes") or b"")

        async def app_to_client() -> None:
            while True:
                try:
                    data = await upstream.receive()
                except watt.mesh.MeshError:
                    await send({"type": "websocket.close", "code": upstream.close_code or 1011,
                                "reason": upstream.close_reason})
                    return
                key = "text" if isinstance(data, str) else "bytes"
                await send({"type": "websocket.send", key: data})

        tasks = [asyncio.ensure_future(client_to_app()), asyncio.ensure_future(app_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()

    async def openapi(self, scope: dict, send) -> None:
        import watt.mesh

        routes = [r for r in sorted(self.config.routes, key=lambda r: r.prefix) if r.openapi]

        async def one(route: Route):
            try:
                reply = await watt.mesh.fetch(f"http://{route.to}.plt.local{route.openapi}",
                                              headers={"accept": "application/json"})
                document = reply.json() if reply.status == 200 else None
            except (watt.mesh.MeshError, ValueError):
                return None
            return (route, document) if isinstance(document, dict) else None

        found = [s for s in await asyncio.gather(*(one(r) for r in routes)) if s is not None]
        merged = merge_openapi(found, self.config.title, self.config.version)
        body = json.dumps(merged).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})


async def _until_disconnect(receive, call, task: asyncio.Task) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    call.cancel()
    task.cancel()


async def _error(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": message, "code": code}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


capability = Capability(
    name="gateway",
    loader="capabilities.gateway:load",
    detect=detect,
    isolation="auto",
    priority=30,
    description="routes path prefixes to other applications over the mesh (watt.gateway.json)",
)
