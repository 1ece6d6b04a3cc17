"""Connections to the entrypoint served inside the worker: no hop through the main loop.

When nothing the main interpreter does per request is configured (no edge stage,
no TLS, no HTTP cache for the entrypoint, no ``limits.maxConcurrency``), the
main interpreter only accepts connections and hands each socket to a
subinterpreter worker of the entrypoint application (a ``CONN`` frame: the fd;
all interpreters share one process).  The worker parses HTTP/1.1, calls the
application and writes the answer itself: no frame, queue or wake-up per
request, and each worker uses its own core, as uvicorn's processes or Node
Watt's threads do.

Only the plain case is parsed here: an HTTP/1.1 request with no body or a
``Content-Length`` body of at most :data:`BODY_LIMIT` bytes.  Anything else (an
upgrade, ``Transfer-Encoding``, ``Expect``, HTTP/1.0, a large body, a head over
the limits, anything malformed) hands the connection back to the main
interpreter with the bytes read so far (a ``HANDOFF`` frame), where the watt
engine serves it, with its streaming, limits, WebSocket bridge and error
answers, for the rest of the connection's life.  What the application sees is
the scope the forwarded path gives it (same headers from
:class:`watt.edge.proxy.Edge`, same logs, metrics and spans from the observer).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from urllib.parse import unquote

from watt.channel import protocol as p
from watt.edge.proxy import Edge
from watt.http1_head import FRESH_GRACE, Connection, DateClock, framed, response_head, sweep

#: Largest request body read here; larger ones stream through the main engine.
BODY_LIMIT = 256 * 1024
_TARGET = re.compile(rb"/[\x21-\x7e]*\Z")
_DISCONNECT = {"type": "http.disconnect"}


def _pipeline(stages: dict):
    """The edge stages this worker runs itself (http1_direct.worker_stages): the same
    classes the main interpreter uses, built from the same settings; None when off."""
    if not stages:
        return None
    from types import SimpleNamespace

    from watt.edge import Pipeline

    built = []
    if "security-headers" in stages:
        from watt.edge.security import SecurityHeaders

        built.append(SecurityHeaders(SimpleNamespace(**stages["security-headers"])))
    if "cors" in stages:
        from watt.edge.cors import Cors, _Policy

        built.append(Cors(_Policy(SimpleNamespace(**stages["cors"])), {}))
    return Pipeline(built)


class _Handoff(Exception):
    """This request is not for the fast path: the main engine takes the connection."""


class DirectServer:
    """The connections this worker serves itself, and their deadlines."""

    def __init__(self, server, channel, settings: dict) -> None:
        self.server = server  # the WorkerServer: app, state, observer, tasks
        self.channel = channel
        limits = settings["limits"]
        self.max_header_size = limits["max_header_size"]
        self.max_header_count = limits["max_header_count"]
        self.body_limit = min(BODY_LIMIT, limits["max_body_size"] or BODY_LIMIT)
        self.request_timeout = limits["request_timeout"] / 1000
        self.header_timeout = limits["header_timeout"] / 1000
        self.keep_alive_timeout = limits["keep_alive_timeout"] / 1000
        self.edge = Edge(settings["user_header"], settings["trusted"])
        self.pipeline = _pipeline(settings.get("stages") or {})
        self.connections: set[DirectProtocol] = set()
        self.closing = False  # drain: every answer says connection: close
        self.stopping = False  # stop: idle connections are closed too
        self.releasing = False  # this worker stops: its connections go back to the main side
        self.final = False  # the runtime stops: connections end here, none goes back
        self.halted = False  # the application ended the worker: no later loop turn
        self.clock = DateClock()
        self._sweeper: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- from the main interpreter -----------------------------------------------------
    def on_conn(self, frame: tuple) -> None:
        """``(CONN, 0, fd, data)``: a client connection to serve, and the bytes another
        worker had read from it."""
        fd, data = frame[2], frame[3]
        if self.stopping or self.server.app is None:
            # Not serving (any more): the main side gives it to another worker.
            self.channel.send((p.HANDOFF, 0, fd, data, 1))
            return
        loop = self._loop = asyncio.get_running_loop()
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            self.channel.send((p.CONN_CLOSED, 0, 1))
            return
        sock.setblocking(False)
        task = loop.create_task(loop.connect_accepted_socket(
            lambda: DirectProtocol(self, data), sock))
        task.add_done_callback(lambda done: self._connected(done, sock))
        self.clock.tick()  # the sweep may not have run for a long while
        if self._sweeper is None:
            self._sweeper = loop.create_task(sweep(self.connections, self.clock))

    def _connected(self, task: asyncio.Task, sock: socket.socket) -> None:
        if not task.cancelled() and task.exception() is not None:
            sock.close()
            self.channel.send((p.CONN_CLOSED, 0, 1))

    def retire(self, mode: int) -> None:
        """``(CONN_RETIRE, 0, mode)``: 0 drain (``connection: close`` from now on),
        1 stop (also close idle connections), 2 abort every connection."""
        self.closing = True
        if mode >= 1:
            self.stopping = self.final = True
            self.releasing = False
            for conn in list(self.connections):
                conn.close_if_idle()
        if mode >= 2:
            for conn in list(self.connections):
                conn.abort()

    def release(self) -> None:
        """This worker is stopping (a restart, a scale-down, a reload): give every
        connection back to the main side, idle ones now, busy ones once answered, so
        that clients keep them (the main side passes them to another worker)."""
        if self.final:
            return  # the runtime stops: retire() closes them instead
        self.releasing = self.stopping = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.hand_off(True)

    def halt(self) -> None:
        """The application ended this worker (SystemExit): what is answered so far
        stays; a request under way gets the 502 the main side would give
        (``WATT_WORKER_DIED``), idle connections go back to the main side."""
        self.releasing = self.stopping = self.halted = True
        for conn in list(self.connections):
            exchange = conn.exchange
            if exchange is None:
                conn.hand_off(True)
            elif not exchange.started and not exchange.gone:
                exchange.gone = True
                exchange.fail("WATT_WORKER_DIED", close=True)
            else:
                conn.abort()  # mid-answer: a truncated body must not pass for a whole one


class DirectProtocol(Connection, asyncio.Protocol):
    """One client connection, parsed and answered in this worker."""

    def __init__(self, direct: DirectServer, data: bytes = b"") -> None:
        self.direct = direct
        self.transport: asyncio.Transport | None = None
        self.buf = data  # read by another worker, which handed the connection back
        self.busy = False  # a request is being answered
        self.closed = False
        self.handed = False  # given back to the main interpreter
        self.handing = False  # waiting for an answer to leave before handing back
        self.fresh = True
        self.head_started: float | None = None
        self.idle_since = time.monotonic()
        self.client: list | None = None
        self.server: list | None = None
        self.exchange: _Exchange | None = None
        self.write_paused = False
        self._drained: asyncio.Future | None = None
        self._looping = False

    # -- connection ------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.direct.connections.add(self)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = [str(peer[0]), int(peer[1])] if isinstance(peer, tuple) else None
        self.server = [str(local[0]), int(local[1])] if isinstance(local, tuple) else None
        if self.direct.releasing:  # arrived while this worker began to stop
            self.hand_off(True)
        elif self.buf:  # before the transport's first read: the bytes stay in order
            self._next()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.direct.connections.discard(self)
        if self.exchange is not None:
            self.exchange.client_gone()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self.handed:
            self.direct.channel.send((p.CONN_CLOSED, 0, 1))

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf = self.buf + data if self.buf else data
        if self.handing:
            return
        if self.busy:
            if len(self.buf) > self.direct.max_header_size + self.direct.body_limit:
                self.transport.pause_reading()  # pipelined: the rest waits in the kernel
            return
        self._next()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drained(self) -> None:
        if self.write_paused and not self.closed:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def close_if_idle(self) -> None:
        if not self.busy and self.head_started is None and not self.buf and not (
                self.fresh and time.monotonic() - self.idle_since < FRESH_GRACE):
            self.close()

    def check_deadlines(self, now: float) -> None:
        direct = self.direct
        if self.closed:
            return
        if self.head_started is not None and now - self.head_started > direct.header_timeout:
            self.abort()
        elif not self.busy and now - self.idle_since > direct.keep_alive_timeout:
            self.close()
        elif direct.stopping and not self.busy:
            self.close_if_idle()
        elif self.exchange is not None:
            self.exchange.check_deadline(now)

    # -- requests --------------------------------------------------------------------------
    def _next(self) -> None:
        """Start each whole request in the buffer, one at a time."""
        if self._looping:
            return  # the loop below goes on once the request that just ended returns
        self._looping = True
        try:
            while not self.busy and not self.closed and self.buf:
                try:
                    if not self._start():
                        return
                except _Handoff:
                    self.hand_off(False)
                    return
        finally:
            self._looping = False

    def _start(self) -> bool:
        """Parse the request at the start of the buffer and run it; False: incomplete."""
        buf = self.buf
        direct = self.direct
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > direct.max_header_size:
                raise _Handoff  # the main engine answers 431
            if self.head_started is None:
                self.head_started = time.monotonic()
            return False
        if end > direct.max_header_size:
            raise _Handoff
        head = buf[:end]
        if head.count(b"\n") != head.count(b"\r\n") or b"\r" in head.replace(b"\r\n", b"") \
                or b"\x00" in head:
            raise _Handoff  # a bare CR or LF, or a NUL: the main engine's strict parser decides
        lines = head.split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or request_line[2] != b"HTTP/1.1" \
                or len(lines) > direct.max_header_count + 1:
            raise _Handoff
        method, target = request_line[0], request_line[1]
        if not method.isalpha() or not method.isupper() or _TARGET.match(target) is None \
                or b"#" in target:
            raise _Handoff
        headers = []
        length = 0
        has_length = False
        keep_alive = True
        for line in lines[1:]:
            colon = line.find(b":")
            if colon <= 0:
                raise _Handoff
            name = line[:colon]
            if b" " in name or b"\t" in name:
                raise _Handoff
            name = name.lower()
            value = line[colon + 1:].strip(b" \t")
            if name == b"content-length":
                if has_length or not value.isdigit():
                    raise _Handoff  # two lengths, or one that is not plain digits
                has_length = True
                length = int(value)
                if length > direct.body_limit:
                    raise _Handoff
            elif name == b"connection":
                lowered = value.lower()
                if b"upgrade" in lowered:
                    raise _Handoff
                if b"close" in lowered:
                    keep_alive = False
            elif name in (b"transfer-encoding", b"upgrade", b"expect"):
                raise _Handoff
            headers.append((name, value))
        start = end + 4
        if len(buf) < start + length:
            if self.head_started is None:
                self.head_started = time.monotonic()
            return False  # the body is still arriving
        body = buf[start:start + length]
        self.buf = buf[start + length:]
        self.head_started = None
        self.fresh = False
        raw_path, _, query = target.partition(b"?")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": method.decode("ascii"), "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": query, "root_path": "", "headers": headers,
            "client": self.client, "server": self.server, "extensions": {},
        }
        scope["headers"] = direct.edge.headers(scope)
        server = direct.server
        if server.state is not None:
            scope["state"] = dict(server.state)
        self.busy = True
        self.idle_since = None
        exchange = self.exchange = _Exchange(self, scope, body, keep_alive)
        if direct.pipeline is not None and exchange.edge_check(direct.pipeline):
            return True  # answered at the edge (a preflight, a refused origin)
        if server.max_concurrency is not None and len(server.tasks) >= server.max_concurrency:
            exchange.fail("WATT_OVERLOADED")
            return True
        task = asyncio.Task(exchange.run(server), loop=direct._loop, eager_start=True)
        if not task.done():
            server.tasks.add(task)
            task.add_done_callback(server.tasks.discard)
        return True

    def exchange_done(self, keep_alive: bool) -> None:
        self.exchange = None
        self.busy = False
        if not keep_alive or self.direct.closing and not self.direct.releasing:
            self.close()
            return
        self.idle_since = time.monotonic()
        if self.direct.releasing:
            self.hand_off(True)
            return
        if self.buf:
            self.transport.resume_reading()
            self._next()

    def hand_off(self, redispatch: bool) -> None:
        """Give the connection, and what it sent that is not answered, to the main side:
        to serve itself (a request the fast path does not take) or, ``redispatch``, to
        pass to another worker (this one is stopping)."""
        if self.closed:
            return
        self.handing = True
        if self.transport.get_write_buffer_size():
            if self.direct.halted:
                self.abort()  # no later turn of this loop to wait for
                return
            # An answer is still going out: hand off once it is in the kernel.
            asyncio.get_running_loop().call_later(0.001, self.hand_off, redispatch)
            self.transport.pause_reading()
            return
        sock = self.transport.get_extra_info("socket")
        try:
            fd = os.dup(sock.fileno())
        except OSError:
            self.abort()
            return
        self.handed = True
        self.closed = True
        self.transport.abort()  # closes our fd only: the connection lives on in ``fd``
        self.direct.channel.send((p.HANDOFF, 0, fd, self.buf, int(redispatch)))
        self.buf = b""


class _Exchange:
    """One request and its answer on a direct connection."""

    __slots__ = ("body", "chunked", "conn", "deadline", "done", "edge", "gone", "head",
                 "keep_alive", "scope", "started", "status", "status_pending", "waiter")

    def __init__(self, conn: DirectProtocol, scope: dict, body: bytes, keep_alive: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.body: bytes | None = body
        self.keep_alive = keep_alive
        self.head = scope["method"] == "HEAD"
        self.started = False  # the response head is written
        self.status = 200
        self.status_pending = None  # the headers of http.response.start, until the first body
        self.chunked = False
        self.done = False  # the response is complete (or abandoned)
        self.gone = False  # the client left, or a timeout answered for the app
        self.waiter: asyncio.Future | None = None
        self.edge = None  # the EdgeRequest, when this worker runs edge stages
        timeout = conn.direct.request_timeout
        self.deadline = time.monotonic() + timeout if timeout else None

    async def receive(self) -> dict:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.done and not self.gone:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return _DISCONNECT

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def client_gone(self) -> None:
        self.gone = True
        self._wake()

    async def send(self, message: dict) -> None:
        if self.gone:
            return  # the client left, or a timeout answered for the app: drop, as uvicorn does
        kind = message["type"]
        if kind == "http.response.start":
            if self.status_pending is not None or self.started:
                raise RuntimeError("http.response.start sent twice")
            self.status = int(message["status"])
            self.status_pending = message.get("headers", ())
            return
        if kind != "http.response.body":
            return  # extensions we do not advertise
        if not self.started and self.status_pending is None:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self.done:
            raise RuntimeError("http.response.body sent after the response ended")
        body = message.get("body", b"")
        more = bool(message.get("more_body", False))
        conn = self.conn
        if not self.started:
            headers, self.status_pending = self.status_pending, None
            conn.transport.write(self._head(headers, body, more) + self._framed(body, more))
        elif body or not more:
            conn.transport.write(self._framed(body, more))
        if not more:
            self.done = True
            self._wake()
        elif conn.write_paused:
            await conn.drained()

    def edge_check(self, pipeline) -> bool:
        """The stages' ``check`` (they answer at once: no stage that waits runs here);
        True when they answered the request themselves."""
        scope = self.scope
        self.edge = req = pipeline.request(scope["method"], scope["path"],
                                           scope["query_string"], scope["headers"],
                                           scope["client"], scope["scheme"])
        try:
            reply = pipeline.check(req)
        except Exception as exc:  # noqa: BLE001 - a stage's bug is a 500, never a hang
            self.conn.direct.server._report(exc)
            reply = pipeline.failed(req)
        scope["headers"] = req.headers
        if reply is None:
            return False
        status, headers, body = reply
        self.status = status
        self.edge = None  # the reply's headers have been through the stages already
        self.conn.transport.write(self._head(headers, body, False) + self._framed(body, False))
        self.done = True
        self.conn.exchange_done(self.keep_alive)
        return True

    def _head(self, headers, body: bytes, more: bool) -> bytes:
        self.started = True
        conn = self.conn
        if self.edge is not None:
            headers = conn.direct.pipeline.on_response(self.edge, self.status, list(headers))
        parts, self.chunked, keep_alive, self.head = response_head(
            b"1.1", self.status, headers, body, more, self.head,
            self.keep_alive and not conn.direct.closing, conn.direct.clock.header)
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        self.keep_alive = keep_alive
        parts.append(b"\r\n")
        return b"".join(parts)

    def _framed(self, body: bytes, more: bool) -> bytes:
        return b"" if self.head else framed(bytes(body), more, self.chunked)

    def fail(self, code: str, close: bool = False) -> None:
        """An answer made here instead of the application's (it failed, is too slow, or
        its worker ends: ``close``).  The request was read whole, so the connection
        can go on, as the main engine's does."""
        status, headers, body = p.error_response(code)
        self.status = status
        if close:
            self.keep_alive = False
        self.conn.transport.write(self._head(headers, body, False) + body)
        self.done = True
        self.conn.exchange_done(self.keep_alive)

    def check_deadline(self, now: float) -> None:
        if self.deadline is not None and not self.started and not self.gone and now > self.deadline:
            self.gone = True  # the app sees http.disconnect; its answer is dropped
            self._wake()
            self.fail("WATT_REQUEST_TIMEOUT")

    async def run(self, server) -> None:
        observer = server.observer
        observed = observer.begin(self.scope) if observer is not None else None
        failure: BaseException | None = None
        try:
            await server.app(self.scope, self.receive, self.send)
        except (Exception, asyncio.CancelledError) as exc:
            failure = exc
            if not self.started and not self.gone:
                server._report(exc)
                self.fail("WATT_APP_UNHANDLED_ERROR")
            elif not self.gone and not self.done:
                server._report(exc)
                self.conn.abort()  # a truncated body must not pass for a whole one
            elif not isinstance(exc, asyncio.CancelledError):
                server._report(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        except BaseException as exc:
            failure = exc
            server.halt()
            raise
        else:
            if self.gone:
                pass
            elif not self.started and self.status_pending is None:
                server._report(RuntimeError("the application returned without sending a "
                                            "response"))
                self.fail("WATT_APP_UNHANDLED_ERROR")
            elif not self.done:
                await self.send({"type": "http.response.body", "body": b"",
                                 "more_body": False})
        finally:
            status = self.status if self.started or self.status_pending is not None else (
                499 if self.gone else 500)
            if observed is not None:
                observer.end(observed, status, failure)
            conn = self.conn
            if conn.exchange is self and not conn.closed:
                conn.exchange_done(self.done and self.keep_alive and not self.gone)
            self.done = True
            self._wake()
