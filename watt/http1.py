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
sweep per ``SWEEP`` seconds, not one timer per request.  WebSocket upgrades go
through wsproto (sans-IO) into the ASGI forwarder.  HTTP/2 is not spoken here:
``server.engine: granian`` serves it.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import time
from urllib.parse import unquote

import httptools
from loguru import logger

from .channel import protocol as p
from .channel.endpoint import Stream
from .edge.h1 import edge_body, edge_check, edge_response
from .entrypoint import bind_socket, format_url, refuse

_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_NO_BODY_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _status_line(version: bytes, status: int) -> bytes:
    return b"HTTP/%s %d %s\r\n" % (version, status, _REASONS.get(status, b""))


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self.header = b""
        self.tick()

    def tick(self) -> None:
        self.header = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"


#: Seconds a new connection has to send its first request once shutdown began.
FRESH_GRACE = 1.0


class H1Engine:
    """``server.engine: watt``: HTTP/1.1 and WebSocket on the main loop."""

    name = "watt"
    scheme = "http"  # "https" with server.tls (HTTP/1.1 only: ALPN offers http/1.1)
    SWEEP = 0.1  # seconds between two checks of the deadlines

    def __init__(self, app, host: str, port: int, graceful_timeout: float = 10.0) -> None:
        self.app = app  # the Forwarder: router, app_id, limits
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self.connections: set[H1Protocol] = set()
        self.clock = _Clock()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self.closing = False

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
        self._server = await loop.create_server(lambda: H1Protocol(self), sock=sock,
                                                backlog=1024,
                                                ssl=None if tls is None else context(tls))
        self._sweeper = loop.create_task(self._sweep())
        return format_url(self.host, self.port, self.scheme)

    async def _sweep(self) -> None:
        last_second = int(time.monotonic())
        while True:
            await asyncio.sleep(self.SWEEP)
            now = time.monotonic()
            if int(now) != last_second:
                last_second = int(now)
                self.clock.tick()
            for conn in list(self.connections):
                conn.check_deadlines(now)

    def retire(self) -> None:
        """The drain before :meth:`stop` (``deploy.drainDelay``): still accept, but end
        each connection after its next response, which says ``connection: close``, so a
        proxy retires its pooled connections itself instead of sending on one that
        this server closes under it."""
        self.closing = True

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the graceful
        timeout), close idle keep-alive connections, then close the rest."""
        self.closing = True
        if self._server is not None:
            # One loop turn accepts what the kernel has queued; closing first would
            # reset those connections, whose requests may already be sent.
            await asyncio.sleep(0)
            self._server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = time.monotonic() + self.graceful_timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            for conn in list(self.connections):
                conn.close_if_idle()
        for conn in list(self.connections):
            conn.abort()
        # Each transport detaches from the server in its connection_lost, a loop
        # iteration after abort(): let them all, before wait_closed (on 3.13.0 a
        # transport detaching after wait_closed raises inside asyncio).
        for _ in range(100):
            if not self.connections:
                break
            await asyncio.sleep(0.01)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()


class H1Protocol(asyncio.Protocol):
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
        self.current: _Exchange | None = None  # the request being answered
        self.queue: list[_Exchange] = []  # pipelined requests waiting their turn
        self.parsing: _Exchange | None = None  # the request whose bytes are arriving
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
        self._upgrading: _Exchange | None = None

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

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()

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
        self.write(_status_line(b"1.1", status) + self.engine.clock.header
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
        exchange = _Exchange(self, {
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
    def exchange_done(self, exchange: _Exchange, keep_alive: bool) -> None:
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


class _Exchange:
    """One request and its response; the stream handler its channel feeds."""

    __slots__ = ("budget", "chunked", "deadline", "done", "edge", "ended", "head", "headers",
                 "held", "keep_alive", "more", "pending", "pool", "proto", "repicked",
                 "request", "response_started", "scope", "stream", "unacked")

    def __init__(self, proto: H1Protocol, scope: dict, keep_alive: bool, head: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.headers = scope["headers"]
        self.keep_alive = keep_alive
        self.head = head
        self.stream: _H1Stream | None = None
        self.pool = None
        self.pending: list[bytes] = []  # body bytes waiting for a stream or for credit
        self.more = True  # the request body goes on
        self.response_started = False
        self.chunked = False
        self.deadline: float | None = None
        self.request: tuple | None = None
        self.repicked = False
        self.unacked = 0  # response bytes written while the socket's buffer was full
        limits = proto.limits
        self.budget = limits.max_body_size if limits is not None and limits.max_body_size \
            else None
        self.done = False
        self.ended = False
        self.edge = None  # the EdgeRequest, when the edge pipeline is not empty
        self.held = False  # the body is read whole for the pipeline before it goes on

    # -- request ---------------------------------------------------------------------------
    def start(self) -> None:
        """This request's turn: the edge's checks, then refuse it or open a stream."""
        edge = self.proto.edge
        self.scope["headers"] = self.headers = edge.headers(self.scope)
        if edge.pipeline is None:
            self._go()
        else:
            edge_check(self, edge.pipeline)

    def _go(self) -> None:
        proto = self.proto
        router = proto.router
        limits = proto.limits
        pool = router.pools.get(proto.app_id)
        if limits is not None:
            refused = refuse(self.scope, pool, limits)
            if refused is not None:  # a body left unread: the connection cannot go on
                return self._error(refused, close=refused == "WATT_BODY_TOO_LARGE")
            if limits.request_timeout:
                self.deadline = time.monotonic() + limits.request_timeout / 1000
        worker = router.pick(proto.app_id)
        if worker is None:
            return self._error("WATT_NO_WORKER")
        for name, value in self.headers:
            if name == b"expect" and value.lower() == b"100-continue":
                proto.write(_CONTINUE)
                break
        self.pool = pool
        if pool is not None:
            pool.in_flight += 1
        self._open(worker.channel)

    def _open(self, channel) -> None:
        stream = _H1Stream(channel, channel._ids.next(), self)
        self.stream = stream
        if channel.lost:
            stream.feed((p.ERROR, stream.sid, "WATT_WORKER_DIED", "the channel's peer is gone"))
            return
        channel.streams[stream.sid] = stream
        first = b"".join(self.pending)
        self.pending = []
        if len(first) > p.CHUNK:
            first, rest = first[:p.CHUNK], first[p.CHUNK:]
            self.pending = [rest]
        more = self.more or bool(self.pending)
        stream.charge(len(first))
        self.request = (p.REQUEST, stream.sid, None, p.encode_scope(self.scope), first, more)
        stream.send(self.request)
        self.ended = not more  # the body's end went out with the head
        self._flush_body()

    def request_body(self, chunk: bytes, more: bool) -> None:
        """From the parser: a piece of the body (``more``), or its end."""
        if self.done:
            return
        if chunk:
            if self.budget is not None:
                self.budget -= len(chunk)
                if self.budget < 0:
                    if self.stream is not None:
                        self.stream.send((p.CANCEL, self.stream.sid))
                    if not self.response_started:
                        self._error("WATT_BODY_TOO_LARGE", close=True)
                    else:
                        self.proto.abort()
                    return
            self.pending.append(chunk)
        if not more:
            self.more = False
            if self.held:
                edge_body(self)
        if self.stream is not None:
            self._flush_body()

    def _flush_body(self) -> None:
        stream = self.stream
        window = stream._send_window
        while self.pending and window.can_send() and not stream.finished:
            chunk = self.pending.pop(0)
            if len(chunk) > p.CHUNK:
                chunk, rest = chunk[:p.CHUNK], chunk[p.CHUNK:]
                self.pending.insert(0, rest)
            window.consume(len(chunk))
            last = not self.more and not self.pending
            stream.send((p.BODY, stream.sid, chunk, not last))
            self.ended = last
        if not self.pending and not self.more and not self.ended and not stream.finished:
            stream.send((p.BODY, stream.sid, b"", False))  # the end of a body already sent
            self.ended = True
        if self.pending:
            self.proto.pause_reading()  # a window's worth is unread: let TCP push back
        elif self.proto.current is self and not self.proto.queue:
            self.proto.resume_reading()

    # -- response ------------------------------------------------------------------------
    def on_frame(self, frame: tuple) -> None:
        kind = frame[0]
        if kind == p.RESPONSE_START:
            _, _, status, headers, body, more = frame
            if self.edge is not None:
                headers = edge_response(self, status, headers)
            self._start_response(status, headers, body, more)
        elif kind == p.RESPONSE_BODY:
            self._body(frame[2], frame[3])
        elif kind == p.CREDIT:
            if self.pending or (not self.more and not self.ended):
                self._flush_body()
        elif kind == p.ERROR:
            code = frame[2]
            if code == "WATT_NO_WORKER" and not self.response_started and not self.repicked \
                    and self.request is not None and not self.request[5]:
                self.repicked = True  # the worker left before taking it: once elsewhere
                self.stream.finish()
                # After the dying worker's clean-up has run (this frame comes from it),
                # so the router no longer offers that worker.
                asyncio.get_running_loop().call_soon(self._resend)
                return
            if not self.response_started:
                self._error(code)
            else:
                logger.warning(f"response aborted mid-body: {code}: {frame[3]}")
                self._finish(False)
                self.proto.abort()  # a truncated body must not pass for a whole one
        elif kind == p.CANCEL:  # the worker stopped reading (a body over the limit)
            if self.budget is not None and self.budget < 0 and not self.response_started:
                self._error("WATT_BODY_TOO_LARGE", close=True)

    def _resend(self) -> None:
        if self.done:
            return
        worker = self.proto.router.pick(self.proto.app_id)
        if worker is None:
            self._error("WATT_NO_WORKER")
            return
        self.pending = [self.request[4]] if self.request[4] else []
        self.more = False
        self._open(worker.channel)

    def _start_response(self, status: int, flat: tuple, body: bytes, more: bool) -> None:
        self.response_started = True
        proto = self.proto
        version = b"1.0" if self.scope["http_version"] == "1.0" else b"1.1"
        parts = [_status_line(version, status), proto.engine.clock.header]
        length = None
        keep_alive = self.keep_alive and not proto.engine.closing
        for i in range(0, len(flat), 2):
            name = flat[i]
            if name == b"content-length":
                try:
                    length = int(flat[i + 1])
                    continue  # written below, once
                except ValueError:
                    length = None
            elif name == b"connection" and flat[i + 1].lower() == b"close":
                keep_alive = False
            elif name == b"date" or name == b"transfer-encoding":
                continue  # ours (and the framing is ours to choose)
            parts.append(flat[i] + b": " + flat[i + 1] + b"\r\n")
        bodiless = self.head or status in _NO_BODY_STATUS or status < 200
        self.head = bodiless
        if length is not None:
            parts.append(b"content-length: %d\r\n" % length)
        elif not more and not bodiless:
            parts.append(b"content-length: %d\r\n" % len(body))
        elif not bodiless:
            if version == b"1.1":
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                keep_alive = False  # HTTP/1.0: the end of the body is the end of the stream
        if keep_alive and self.more:
            keep_alive = False  # answered before the whole body came: the rest is unread
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        elif version == b"1.0":
            parts.append(b"connection: keep-alive\r\n")
        self.keep_alive = keep_alive
        parts.append(b"\r\n")
        if bodiless:
            proto.write(b"".join(parts))
            if not more:
                self._finish(True)
            return
        parts.append(self._framed(body, more))
        proto.write(b"".join(parts))
        self._sent(len(body), more)

    def _framed(self, body: bytes, more: bool) -> bytes:
        if not self.chunked:
            return body
        chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        return chunk if more else chunk + b"0\r\n\r\n"

    def _body(self, chunk: bytes, more: bool) -> None:
        if self.done:
            return
        if not self.head:  # HEAD, 204, 304: the head was the whole answer
            self.proto.write(self._framed(chunk, more))
        self._sent(len(chunk), more)

    def _sent(self, n: int, more: bool) -> None:
        if not more:
            self._finish(True)
            return
        if self.proto.write_paused:
            self.unacked += n  # credit back once the socket drains
        else:
            self.stream.consumed(n)

    def writable(self) -> None:
        if self.unacked and self.stream is not None:
            n, self.unacked = self.unacked, 0
            self.stream.consumed(n)

    def _error(self, code: str, close: bool = False) -> None:
        status, headers, body = p.error_response(code)
        if self.edge is not None:
            headers = self.proto.edge.pipeline.on_response(self.edge, status, headers)
        self.keep_alive = self.keep_alive and not close
        self._start_response(status, p.flatten_headers(headers), body, False)

    def reply(self, status: int, headers: list, body: bytes) -> None:
        """An answer made at the edge instead of the application's."""
        self._start_response(status, p.flatten_headers(headers), body, False)

    def _release(self) -> None:
        """Done: forget the stream, give back the concurrency slot."""
        self.done = True
        if self.stream is not None:
            self.stream.finish()
        if self.pool is not None:
            self.pool.in_flight -= 1
            self.pool = None

    def _finish(self, ok: bool) -> None:
        if self.done:
            return
        self._release()
        self.proto.exchange_done(self, ok and self.keep_alive and not self.more)

    def check_deadline(self, now: float) -> None:
        if self.deadline is not None and not self.response_started and now > self.deadline:
            if self.stream is not None:
                self.stream.send((p.CANCEL, self.stream.sid))  # the app sees http.disconnect
            self._error("WATT_REQUEST_TIMEOUT")

    def client_gone(self) -> None:
        if self.stream is not None and not self.stream.finished:
            self.stream.send((p.CANCEL, self.stream.sid))
        self._release()


class _H1Stream(Stream):
    """A stream whose frames go straight to its exchange (no inbox, no waiter)."""

    __slots__ = ("exchange",)

    def __init__(self, channel, sid: int, exchange: _Exchange) -> None:
        super().__init__(channel, sid)
        self.exchange = exchange

    def feed(self, frame: tuple) -> None:
        kind = frame[0]
        if kind == p.CREDIT:
            if frame[2] > 0:
                self._send_window.grant(frame[2])
        elif kind in p.TERMINAL and self.closed_by_peer is None:
            self.closed_by_peer = frame
        self.exchange.on_frame(frame)
