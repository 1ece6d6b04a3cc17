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
import os
import socket

from loguru import logger

from .capability import accept_lifespan
from .channel import protocol as p
from .channel.endpoint import Stream, StreamClosed
from .edge.proxy import DEFAULT as DEFAULT_EDGE
from .edge.proxy import edge_headers  # noqa: F401 (moved there; kept importable)
from .errors import WattError


async def _send_error(send, code: str) -> None:
    status, headers, body = p.error_response(code)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Forwarder:
    """The ASGI application an engine serves: forwards to the entrypoint app's workers."""

    def __init__(self, router, app_id: str, limits=None, edge=None, tls=None) -> None:
        self.router = router
        self.app_id = app_id
        self.limits = limits  # config LimitsConfig, or None for no limits
        self.active = 0  # requests and WebSockets in progress (ASGI engines), read by /metrics
        self.edge = edge or DEFAULT_EDGE  # watt.edge.proxy.Edge: header rules + pipeline
        self.tls = tls  # config TlsConfig (cert and key paths), or None for plain HTTP
        self.closing = False  # deploy.drainDelay: HTTP/1 responses say `connection: close`

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        if self.closing and scope["type"] == "http" and scope.get("http_version") in _H1:
            send = _closing(send)
        self.active += 1
        try:
            await forward(self.router, self.app_id, scope, receive, send, self.limits, self.edge)
        finally:
            self.active -= 1


_H1 = ("1.1", "1.0")  # HTTP/2 forbids a `connection` header: it has GOAWAY instead


def _closing(send):
    """``send`` with ``connection: close`` added to the response head: h11 (hypercorn)
    and hyper (granian) then end the connection after this response, so a proxy
    retires its pooled connection instead of sending on one about to close."""
    async def closing_send(message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing_send


async def forward(router, app_id: str, scope: dict, receive, send, limits=None,
                  edge=DEFAULT_EDGE) -> None:
    """Send one request or WebSocket from an engine (or inject) to ``app_id``."""
    scope = dict(scope)
    scope["headers"] = edge.headers(scope)
    if edge.pipeline is not None:
        from .edge.asgi import guard

        passed = await guard(edge.pipeline, scope, receive, send,
                             limits.max_body_size if limits is not None else 0)
        if passed is None:
            return
        receive, send = passed
    if scope["type"] == "http":
        pool = router.pools.get(app_id)
        refused = refuse(scope, pool, limits) if limits is not None else None
        if refused is not None:
            await _send_error(send, refused)
            return
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        # Picked only now, with the first body bytes in hand: the REQUEST goes out
        # at once, so a worker exiting meanwhile finds it queued (and bounces it).
        worker = router.pick(app_id)
        if worker is None:
            await _send_error(send, "WATT_NO_WORKER")
            return
        pool.in_flight += 1
        try:
            await _forward_http(worker.channel.open_stream(), scope, message, receive, send,
                                lambda: _repick(router, app_id), limits)
        finally:
            pool.in_flight -= 1
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect; then pick, as for HTTP
        worker = router.pick(app_id)
        if worker is None:
            await send({"type": "websocket.close", "code": 1013})
            return
        await _forward_websocket(worker.channel.open_stream(), scope, receive, send)


def _no_repick() -> None:
    return None


def refuse(scope: dict, pool, limits) -> str | None:
    """The code of a limit this request breaks before it is sent on, or None (both
    the ASGI engines and the watt engine ask)."""
    if limits.max_concurrency and pool is not None and pool.in_flight >= limits.max_concurrency:
        return "WATT_OVERLOADED"
    if limits.max_body_size:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > limits.max_body_size:
                        return "WATT_BODY_TOO_LARGE"
                except ValueError:
                    return None  # the engine rejects a malformed length itself
    return None


class _Budget:
    """Bytes of request body still allowed; ``exceeded`` once the client sent more."""

    __slots__ = ("exceeded", "left")

    def __init__(self, limit: int) -> None:
        self.left = limit if limit else None
        self.exceeded = False

    def take(self, n: int) -> bool:
        if self.left is None:
            return True
        self.left -= n
        if self.left < 0:
            self.exceeded = True
        return not self.exceeded


#: Seconds after which a request whose body is complete but whose answer has
#: not come yet gets a task watching for the client leaving.
_WATCH_AFTER = 0.05


def _cancel(stream: Stream) -> None:
    if not stream.finished and stream.closed_by_peer is None:
        stream.send((p.CANCEL, stream.sid))
        stream.feed((p.CANCEL, stream.sid))  # wake our own response loop


async def _pump_request(stream: Stream, receive, rest: bytes, more: bool,
                        budget: _Budget) -> None:
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
            chunk = message.get("body", b"")
            if not budget.take(len(chunk)):
                _cancel(stream)  # the response loop answers 413
                return
            await stream.send_data(p.BODY, chunk, more)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                _cancel(stream)
                return
    except StreamClosed:
        return


def _repick(router, app_id: str) -> Stream | None:
    worker = router.pick(app_id)
    return None if worker is None else worker.channel.open_stream()


async def _forward_http(stream: Stream, scope: dict, message: dict, receive, send, repick,
                        limits=None) -> None:
    body = message.get("body", b"")
    more = bool(message.get("more_body", False))
    budget = _Budget(limits.max_body_size if limits is not None else 0)
    if not budget.take(len(body)):
        stream.finish()
        await _send_error(send, "WATT_BODY_TOO_LARGE")
        return
    timeout = limits.request_timeout / 1000 if limits is not None and limits.request_timeout \
        else None
    first, rest = body[: p.CHUNK], body[p.CHUNK :]
    stream.charge(len(first))
    request = (p.REQUEST, stream.sid, None, p.encode_scope(scope), first, more or bool(rest))
    stream.send(request)
    loop = asyncio.get_running_loop()
    pump = None
    timer = None

    def start_pump() -> None:
        nonlocal pump
        if pump is None and not stream.finished:
            pump = loop.create_task(_pump_request(stream, receive, rest, more, budget))

    if more or rest:
        start_pump()
    else:
        # The body is complete; only a client leaving remains to be noticed.  Most
        # answers come before this timer fires, so the watcher task is rarely made.
        timer = loop.call_later(_WATCH_AFTER, start_pump)
    started = False
    try:
        while True:
            if started or timeout is None:
                frame = await stream.receive()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        frame = await stream.receive()
                except TimeoutError:
                    _cancel(stream)  # the app sees http.disconnect
                    await _send_error(send, "WATT_REQUEST_TIMEOUT")
                    return
            kind = frame[0]
            if kind == p.RESPONSE_START:
                _, _, status, headers, chunk, more_body = frame
                await send({"type": "http.response.start", "status": status,
                            "headers": p.pair_headers(headers)})
                started = True
            elif kind == p.RESPONSE_BODY:
                _, _, chunk, more_body = frame
            elif kind == p.ERROR:
                if frame[2] == "WATT_NO_WORKER" and not started and not request[5]:
                    # The worker exited (or was stopping) before it took the
                    # request: send it, once, to another worker.
                    retry = repick()
                    if retry is not None:
                        stream.finish()
                        stream, repick = retry, _no_repick
                        stream.charge(len(first))
                        stream.send((p.REQUEST, stream.sid) + request[2:])
                        if pump is not None:  # it watched the old stream
                            pump.cancel()
                            pump = None
                            start_pump()
                        continue
                if not started:
                    await _send_error(send, frame[2])
                    return
                # Headers are gone already: all that is left is to cut the
                # connection, so the client cannot take a truncated body as whole.
                logger.warning(f"response aborted mid-body: {frame[2]}: {frame[3]}")
                raise ConnectionAbortedError(f"{frame[2]}: {frame[3]}")
            else:  # CANCEL: the client went away, or sent more body than allowed
                if budget.exceeded and not started:
                    await _send_error(send, "WATT_BODY_TOO_LARGE")
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": more_body})
            if not more_body:
                return
            start_pump()  # a streamed response: watch for the client leaving now
            stream.consumed(len(chunk))
    finally:
        stream.finish()
        if timer is not None:
            timer.cancel()
        if pump is not None and not pump.done():
            pump.cancel()


async def _forward_websocket(stream: Stream, scope: dict, receive, send) -> None:
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
        if pending:
            await asyncio.wait(pending)
        if outbound in done:
            close = outbound.result()
            if close is not None:
                # Sent only once no receive() is pending: granian holds a close
                # back while one is.
                await send(close)
        else:
            inbound.result()
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


async def _ws_worker_to_client(stream: Stream, send) -> dict | None:
    """Relay the worker's messages; return the close message to send last."""
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
            return {"type": "websocket.close", "code": frame[2], "reason": frame[3]}
        else:
            return {"type": "websocket.close", "code": 1011}


# -- engines -----------------------------------------------------------------------------
def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen now, so the URL is valid before the engine accepts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and without it a response written in two parts waits for the
    # client's delayed ACK (40 ms) on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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


def _retire(engine) -> None:
    """An ASGI engine's ``retire`` (the drain, ``deploy.drainDelay``): its HTTP/1
    responses say ``connection: close`` from now on (:func:`_closing`)."""
    engine.app.closing = True


def format_url(host: str, port: int, scheme: str = "http") -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


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
        limits = getattr(self.app, "limits", None)
        if limits is not None:
            config.h11_max_incomplete_size = limits.max_header_size
            config.keep_alive_timeout = limits.keep_alive_timeout / 1000
            # hypercorn has one read timeout for the whole connection: it bounds
            # a slow head, and a client that stalls mid-body for as long.
            config.read_timeout = limits.header_timeout / 1000
        tls = getattr(self.app, "tls", None)
        if tls is not None:  # ALPN h2 and http/1.1
            config.certfile, config.keyfile, config.keyfile_password = tls
        self._task = asyncio.get_running_loop().create_task(
            serve(self.app, config, shutdown_trigger=self._shutdown.wait))
        return format_url(self.host, self.port, "http" if tls is None else "https")

    retire = _retire

    async def stop(self) -> None:
        self._shutdown.set()
        if self._task is not None:
            await self._task


class GranianEngine:
    """granian's Rust HTTP/1.1, HTTP/2 and WebSocket engine, embedded in our loop.

    The fast engine (DESIGN.md, "The entrypoint ceiling").  granian marks
    its embed API experimental, so the version is pinned in the ``granian``
    extra and :class:`HypercornEngine` stays a full alternative.
    """

    name = "granian"

    def __init__(self, app, host: str, port: int, graceful_timeout: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self._server = None
        self._task: asyncio.Task | None = None

    @staticmethod
    def available() -> bool:
        try:
            import granian.server.embed  # noqa: F401
        except ImportError:
            return False
        return True

    async def start(self) -> str:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        class _Server(Server):
            # Build the listening socket in the holder form on every platform,
            # so its fd (and the port actually bound, for port 0) can be read.
            def _init_shared_socket(self):
                from granian._granian import ListenerSpec

                spec = ListenerSpec(self.bind_addr, self.bind_port, self.backlog)
                self._shd = spec.build()
                self._sfd = self._shd.get_fd()
                self._ssp = None

        # Fail with our code before granian logs its own bind error.
        bind_socket(self.host, self.port).close()
        options = {}
        limits = getattr(self.app, "limits", None)
        if limits is not None:
            from granian.http import HTTP1Settings

            options["http1_settings"] = HTTP1Settings(
                header_read_timeout=limits.header_timeout,
                max_buffer_size=max(limits.max_header_size, 8192))
        tls = getattr(self.app, "tls", None)
        if tls is not None:  # HTTP/2 via ALPN (http: auto)
            from pathlib import Path

            from granian.constants import SSLProtocols

            options.update(ssl_cert=Path(tls.cert), ssl_key=Path(tls.key),
                           ssl_key_password=tls.password, ssl_protocol_min=SSLProtocols.tls12)
        server = _Server(self.app, address=self.host, port=self.port, interface=Interfaces.ASGI,
                         log_enabled=False, backlog=1024, **options)
        server.workers_kill_timeout = self.graceful_timeout
        self._server = server
        self._task = asyncio.get_running_loop().create_task(server.serve())
        while server._shd is None:
            if self._task.done():
                self._task.result()
                raise WattError("granian stopped while starting", code="WATT_ENTRYPOINT_BIND")
            await asyncio.sleep(0)
        fd = os.dup(server._sfd)
        with socket.socket(fileno=fd) as sock:
            self.port = sock.getsockname()[1]
            # granian's worker calls listen() only once it runs (later still with TLS):
            # listening now, clients wait in the backlog instead of being refused.
            sock.listen(1024)
        return format_url(self.host, self.port, "http" if tls is None else "https")

    retire = _retire

    async def stop(self) -> None:
        if self._server is not None:
            self._server.interrupt_signal = True
            self._server.main_loop_interrupt.set()
        if self._task is not None:
            await self._task


def create_engine(name: str, app, host: str, port: int, graceful_timeout: float):
    """``auto`` = Watt's own HTTP/1.1 engine (httptools), else granian, else hypercorn.

    Measured with benchmarks/run.py (entrypoint scenario): the ``watt`` engine
    spends about half the main-loop time per request that granian's embed
    does, because no thread hand-off and no ASGI messages stand between the
    socket and the channel; granian remains the engine for HTTP/2."""
    from .http1 import H1Engine

    if name == "auto":
        name = ("watt" if H1Engine.available() else
                "granian" if GranianEngine.available() else "hypercorn")
    if name == "watt":
        if not H1Engine.available():
            raise WattError("server.engine is 'watt' but httptools or wsproto is not "
                            "installed", code="WATT_ENGINE_UNAVAILABLE")
        return H1Engine(app, host, port, graceful_timeout)
    if name == "granian":
        if not GranianEngine.available():
            raise WattError("server.engine is 'granian' but granian is not installed: "
                            "pip install 'watt[granian]'", code="WATT_ENGINE_UNAVAILABLE")
        return GranianEngine(app, host, port, graceful_timeout)
    return HypercornEngine(app, host, port, graceful_timeout)
