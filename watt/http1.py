"""Watt's own HTTP/1.1 entrypoint engine: bytes in, frames out, no ASGI in between.

Every request crosses the main interpreter's loop, so what the loop spends per
request is the runtime's throughput ceiling (DESIGN.md).  The ASGI engines
(granian embedded, hypercorn) turn each request into ASGI messages, a task and
``receive``/``send`` coroutines, then :mod:`watt.entrypoint` turns those into
frames; granian also wakes our loop from its own thread for every request.
This engine is an :class:`asyncio.Protocol` that parses with httptools (the C
parser uvicorn uses) and writes the REQUEST frame from the parser's callbacks;
the response frames are written to the socket from the stream's ``feed``, as
they arrive — no task, future or timer per request.  Request bodies stream
under the channel's credit (reading pauses when the worker has a window's
worth unread), response bodies under the socket's (credit goes back only once
the bytes are handed to the kernel).

The same limits as the other engines: ``maxBodySize`` (413), ``requestTimeout``
(504), ``maxConcurrency`` (503), ``headerTimeout`` (slow heads are cut),
``keepAliveTimeout``, ``maxHeaderSize`` (431); deadlines are checked by one
sweep per ``http1_head.SWEEP`` seconds, not one timer per request.  WebSocket upgrades go
through wsproto (sans-IO) into the ASGI forwarder.  HTTP/2 is not spoken here:
``server.engine: granian`` serves it.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import unquote

import httptools

from .entrypoint import bind_socket, format_url
from .http1_exchange import Exchange
from .http1_head import FRESH_GRACE, Connection, DateClock, status_line, sweep


class H1Engine:
    """``server.engine: watt``: HTTP/1.1 and WebSocket on the main loop."""

    name = "watt"
    scheme = "http"  # "https" with server.tls (HTTP/1.1 only: ALPN offers http/1.1)

    def __init__(self, app, host: str, port: int, graceful_timeout: float = 10.0) -> None:
        self.app = app  # the Forwarder: router, app_id, limits
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self.connections: set[H1Protocol] = set()
        self.clock = DateClock()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self.closing = False
        self.stopped = False
        #: http1_direct.DirectAccept when the entrypoint's workers serve connections
        #: themselves (set by the runtime before start); None: forward every request.
        self.direct = None

    @staticmethod
    def available() -> bool:
        try:
            import httptools  # noqa: F401
            import wsproto  # noqa: F401
        except ImportError:
            return False
        return True

    async def start(self) -> str:
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        tls = getattr(self.app, "tls", None)
        if tls is not None:
            from .edge.tls import context

            self.scheme = "https"
        if self.direct is not None and tls is None:
            self.direct.start(sock)
        else:
            self.direct = None
            self._server = await loop.create_server(lambda: H1Protocol(self), sock=sock,
                                                    backlog=1024,
                                                    ssl=None if tls is None else context(tls))
        self._sweeper = loop.create_task(sweep(self.connections, self.clock))
        return format_url(self.host, self.port, self.scheme)

    def retire(self) -> None:
        """The drain before :meth:`stop` (``deploy.drainDelay``): still accept, but end
        each connection after its next response, which says ``connection: close``, so a
        proxy retires its pooled connections itself instead of sending on one that
        this server closes under it."""
        self.closing = True
        if self.direct is not None:
            self.direct.retire(0)

    def adopt(self, sock, data: bytes) -> None:
        """Serve a connection accepted elsewhere (direct mode: one no worker took, or
        one a worker handed back with the bytes it had read, ``data``)."""
        if self.stopped:  # nothing would ever close it: the client reconnects elsewhere
            sock.close()
            return
        loop = asyncio.get_running_loop()
        loop.create_task(loop.connect_accepted_socket(lambda: _Adopted(self, data), sock))

    @property
    def active(self) -> int:
        """Open client connections, here and in the workers."""
        return len(self.connections) + (self.direct.active if self.direct is not None else 0)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the graceful
        timeout), close idle keep-alive connections, then close the rest."""
        self.closing = True
        direct = self.direct
        if direct is not None:
            direct.stop_accepting()
            direct.retire(1)
        if self._server is not None:
            # One loop turn accepts what the kernel has queued; closing first would
            # reset those connections, whose requests may already be sent.
            await asyncio.sleep(0)
            self._server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = time.monotonic() + self.graceful_timeout
        while (self.connections or direct is not None and direct.active) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            for conn in list(self.connections):
                conn.close_if_idle()
        for conn in list(self.connections):
            conn.abort()
        if direct is not None:
            direct.retire(2)
        # Each transport detaches from the server in its connection_lost, a loop
        # iteration after abort(): let them all, before wait_closed (on 3.13.0 a
        # transport detaching after wait_closed raises inside asyncio).
        for _ in range(100):
            if not self.connections:
                break
            await asyncio.sleep(0.01)
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.stopped = True
        if self._server is not None:
            await self._server.wait_closed()


class H1Protocol(Connection, asyncio.Protocol):
    """One client connection."""

    def __init__(self, engine: H1Engine) -> None:
        self.engine = engine
        forwarder = engine.app
        self.router = forwarder.router
        self.app_id = forwarder.app_id
        self.limits = forwarder.limits
        self.edge = forwarder.edge
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple | None = None
        self.server: tuple | None = None
        self.current: Exchange | None = None  # the request being answered
        self.queue: list[Exchange] = []  # pipelined requests waiting their turn
        self.parsing: Exchange | None = None  # the request whose bytes are arriving
        self.head_bytes = 0
        self.head_started: float | None = None  # first byte of a request head
        self.idle_since: float | None = None
        self.fresh = True  # no request yet: its client has just connected to send one
        self.write_paused = False
        self.read_paused = False
        self.closed = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._ws = None
        self._has_body = False
        self._upgrading: Exchange | None = None

    # -- connection --------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.engine.connections.add(self)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        self.idle_since = time.monotonic()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.engine.connections.discard(self)
        for exchange in [self.current, *self.queue]:
            if exchange is not None:
                exchange.client_gone()
        self.current = None
        self.queue.clear()
        if self._ws is not None:
            self._ws.connection_lost()

    def data_received(self, data: bytes) -> None:
        if self._ws is not None:
            self._ws.data_received(data)
            return
        if self.closed:
            return  # answered and closing (a 400, 413, 431): the rest is not read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data, upgrade.args[0] if upgrade.args else len(data))
        except httptools.HttpParserError as exc:
            if not self.closed:
                self._fail(400, f"malformed request: {exc}")

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.current is not None:
            self.current.writable()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def close_if_idle(self) -> None:
        """At shutdown: close when no request is under way.  A connection that has
        not yet sent a request is given ``FRESH_GRACE`` to send it (a proxy connects
        and writes at once: closing it first would fail a request the client had
        already sent), and one whose request head is arriving is not idle."""
        if self.current is None and not self.queue and self.parsing is None \
                and self._ws is None and self.head_started is None and not (
                    self.fresh and time.monotonic() - self.idle_since < FRESH_GRACE):
            self.close()

    def _fail(self, status: int, message: str) -> None:
        """An answer from the engine itself, then close (the stream is unusable)."""
        body = message.encode()
        self.write(status_line(b"1.1", status) + self.engine.clock.header
                   + b"content-type: text/plain; charset=utf-8\r\n"
                   + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        self.close()

    def check_deadlines(self, now: float) -> None:
        limits = self.limits
        if limits is None or self.closed:
            return
        if self.head_started is not None and self.parsing is None and \
                now - self.head_started > limits.header_timeout / 1000:
            self.abort()  # a head that takes this long is an attack or a dead client
        elif self.idle_since is not None and self.current is None and \
                now - self.idle_since > limits.keep_alive_timeout / 1000:
            self.close()
        elif self.current is not None:
            self.current.check_deadline(now)

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._has_body = False
        self.head_bytes = 0
        self.fresh = False
        if self.head_started is None:
            self.head_started = time.monotonic()
            self.idle_since = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        limits = self.limits
        if limits is not None and len(self._headers) > limits.max_header_count:
            self._fail(431, "too many request header fields")
            raise httptools.HttpParserError("too many headers")
        if name == b"content-length":
            self._has_body = value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            self._has_body = True
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, n: int) -> None:
        self.head_bytes += n
        limits = self.limits
        if limits is not None and self.head_bytes > limits.max_header_size:
            self._fail(431, "request header fields too large")
            raise httptools.HttpParserError("head too large")

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.head_started = None
        url = httptools.parse_url(self._url)
        raw_path = url.path
        method = parser.get_method().decode("ascii")
        exchange = Exchange(self, {
            "type": "http", "http_version": parser.get_http_version(), "method": method,
            "scheme": self.engine.scheme, "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path, "query_string": url.query or b"", "root_path": "",
            "headers": self._headers, "client": self.client, "server": self.server,
        }, parser.should_keep_alive(), method == "HEAD")
        self.parsing = exchange
        if parser.should_upgrade():
            self._upgrading = exchange
            return  # the upgrade exception follows: handled in data_received
        if not self._has_body:
            exchange.more = False  # no body: the request is whole already
        if self.current is None:
            self.current = exchange
            exchange.start()
        else:
            self.queue.append(exchange)
            self.pause_reading()  # pipelined: one at a time, the rest waits in the kernel

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.request_body(body, True)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        if exchange is not None and exchange is not self._upgrading:
            exchange.request_body(b"", False)

    # -- the next request --------------------------------------------------------------
    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        if self.current is exchange:
            self.current = None
        if not keep_alive or self.engine.closing:
            self.close()
            return
        if self.queue:
            self.current = self.queue.pop(0)
            self.current.start()
        else:
            self.idle_since = time.monotonic()
            self.resume_reading()

    # -- WebSocket ---------------------------------------------------------------------
    def _upgrade(self, data: bytes, offset: int) -> None:
        exchange, self._upgrading, self.parsing = self._upgrading, None, None
        headers = dict(exchange.headers) if exchange is not None else {}
        if exchange is None or headers.get(b"upgrade", b"").lower() != b"websocket":
            self._fail(400, "unsupported upgrade (only websocket)")
            return
        from .ws_bridge import WebSocketBridge

        self._ws = WebSocketBridge(self, exchange.scope, data[offset:])


class _Adopted(H1Protocol):
    """A connection that arrives with bytes already read (a worker's handoff)."""

    def __init__(self, engine: H1Engine, data: bytes) -> None:
        super().__init__(engine)
        self._first = data

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self._first:  # before the transport's first read: the bytes stay in order
            data, self._first = self._first, b""
            self.data_received(data)
