"""The public HTTP side: ASGI requests from an engine become frames to a worker.

:func:`forward` is the one path every request from outside takes (and
:meth:`Runtime.inject` too): pick a worker of the entrypoint application,
open a stream on its channel, send the scope and body, relay the response.
Bodies stream both ways under the channel's flow control, so a 200 MB
upload or download passes with bounded memory.  The engine (hypercorn, or
granian embedded) runs on the main loop; only it binds a port.
"""

from __future__ import annotations

import asyncio
import json
import socket

from .channel import protocol as p
from .channel.endpoint import Stream, StreamClosed
from .errors import WattError

_ERROR_STATUS = {"WATT_WORKER_DIED": 502, "WATT_NO_WORKER": 503, "WATT_MESH_UNKNOWN_APP": 502}


def _error_response(code: str) -> tuple[int, list, bytes]:
    status = _ERROR_STATUS.get(code, 500)
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[status]
    # The app's exception text stays in the logs: it may hold secrets.
    body = json.dumps({"error": reason, "code": code}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return status, headers, body


async def _send_error(send, code: str) -> None:
    status, headers, body = _error_response(code)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Forwarder:
    """The ASGI application an engine serves: forwards to the entrypoint app's workers."""

    def __init__(self, router, app_id: str) -> None:
        self.router = router
        self.app_id = app_id

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await forward(self.router, self.app_id, scope, receive, send)


async def forward(router, app_id: str, scope: dict, receive, send) -> None:
    worker = router.pick(app_id)
    if scope["type"] == "http":
        if worker is None:
            await _send_error(send, "WATT_NO_WORKER")
            return
        await _forward_http(worker.channel.open_stream(), scope, receive, send)
    elif scope["type"] == "websocket":
        if worker is None:
            await receive()
            await send({"type": "websocket.close", "code": 1013})
            return
        await _forward_websocket(worker.channel.open_stream(), scope, receive, send)


def _cancel(stream: Stream) -> None:
    if not stream.finished and stream.closed_by_peer is None:
        stream.send((p.CANCEL, stream.sid))
        stream.feed((p.CANCEL, stream.sid))  # wake our own response loop


async def _pump_request(stream: Stream, receive, rest: bytes, more: bool) -> None:
    """Request body -> BODY frames (with credit), then watch for the client leaving."""
    try:
        if rest:
            await stream.send_data(p.BODY, rest, more)
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                _cancel(stream)
                return
            more = bool(message.get("more_body", False))
            await stream.send_data(p.BODY, message.get("body", b""), more)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                _cancel(stream)
                return
    except StreamClosed:
        return


async def _forward_http(stream: Stream, scope: dict, receive, send) -> None:
    message = await receive()
    if message["type"] == "http.disconnect":
        stream.finish()
        return
    body = message.get("body", b"")
    more = bool(message.get("more_body", False))
    first, rest = body[: p.CHUNK], body[p.CHUNK :]
    stream.charge(len(first))
    stream.send((p.REQUEST, stream.sid, None, p.encode_scope(scope), first, more or bool(rest)))
    pump = asyncio.get_running_loop().create_task(_pump_request(stream, receive, rest, more))
    started = False
    try:
        while True:
            frame = await stream.receive()
            kind = frame[0]
            if kind == p.RESPONSE_START:
                _, _, status, headers, chunk, more_body = frame
                await send({"type": "http.response.start", "status": status,
                            "headers": p.pair_headers(headers)})
                started = True
            elif kind == p.RESPONSE_BODY:
                _, _, chunk, more_body = frame
            elif kind == p.ERROR:
                if not started:
                    await _send_error(send, frame[2])
                    return
                raise ConnectionAbortedError(f"{frame[2]}: {frame[3]}")
            else:  # CANCEL: the client went away
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": more_body})
            if not more_body:
                return
            stream.consumed(len(chunk))
    finally:
        stream.finish()
        if not pump.done():
            pump.cancel()


async def _forward_websocket(stream: Stream, scope: dict, receive, send) -> None:
    await receive()  # websocket.connect
    stream.send((p.REQUEST, stream.sid, None, p.encode_scope(scope), b"", False))
    try:
        frame = await stream.receive()
        if frame[0] == p.WS_ACCEPT:
            await send({"type": "websocket.accept", "subprotocol": frame[2],
                        "headers": p.pair_headers(frame[3])})
        else:
            code = frame[2] if frame[0] == p.WS_CLOSE else 1011
            await send({"type": "websocket.close", "code": code})
            return
        loop = asyncio.get_running_loop()
        inbound = loop.create_task(_ws_client_to_worker(stream, receive))
        outbound = loop.create_task(_ws_worker_to_client(stream, send))
        done, pending = await asyncio.wait({inbound, outbound},
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
    finally:
        stream.finish()


async def _ws_client_to_worker(stream: Stream, receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            stream.send((p.WS_CLOSE, stream.sid, message.get("code", 1000),
                         message.get("reason") or ""))
            return
        try:
            await stream.wait_credit()
        except StreamClosed:
            return
        text = message.get("text")
        if text is not None:
            stream.charge(len(text.encode()))
            stream.send((p.WS_MESSAGE, stream.sid, text, None))
        else:
            data = message.get("bytes") or b""
            stream.charge(len(data))
            stream.send((p.WS_MESSAGE, stream.sid, None, data))


async def _ws_worker_to_client(stream: Stream, send) -> None:
    while True:
        frame = await stream.receive()
        kind = frame[0]
        if kind == p.WS_MESSAGE:
            text, data = frame[2], frame[3]
            if text is not None:
                await send({"type": "websocket.send", "text": text})
                stream.consumed(len(text.encode()))
            else:
                await send({"type": "websocket.send", "bytes": data})
                stream.consumed(len(data))
        elif kind == p.WS_CLOSE:
            await send({"type": "websocket.close", "code": frame[2], "reason": frame[3]})
            return
        else:
            await send({"type": "websocket.close", "code": 1011})
            return


# -- engines -----------------------------------------------------------------------------
def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen now, so the URL is valid before the engine accepts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise WattError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                        code="WATT_ENTRYPOINT_BIND") from None
    sock.setblocking(False)
    return sock


def format_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class HypercornEngine:
    """hypercorn on the main loop: HTTP/1.1, HTTP/2 (h2c), WebSocket; pure Python."""

    name = "hypercorn"

    def __init__(self, app, host: str, port: int, graceful_timeout: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self._shutdown = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> str:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns and closes it
        config.graceful_timeout = self.graceful_timeout
        config.accesslog = None
        config.errorlog = None
        self._task = asyncio.get_running_loop().create_task(
            serve(self.app, config, shutdown_trigger=self._shutdown.wait))
        return format_url(self.host, self.port)

    async def stop(self) -> None:
        self._shutdown.set()
        if self._task is not None:
            await self._task
