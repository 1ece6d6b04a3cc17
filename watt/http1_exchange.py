"""One HTTP/1.1 request of :mod:`watt.http1` and its response: the exchange.

The REQUEST frame is written from the parser's callbacks (the protocol in
:mod:`watt.http1` calls :meth:`Exchange.start` and :meth:`Exchange.request_body`);
the response frames the worker sends are written to the socket by
:meth:`Exchange.on_frame` as they arrive, under the socket's flow control.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from loguru import logger

from .channel import protocol as p
from .channel.endpoint import Stream
from .edge.h1 import edge_body, edge_check, edge_response
from .entrypoint import refuse
from .http1_head import framed, response_head

if TYPE_CHECKING:
    from .http1 import H1Protocol

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
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
        self.stream: H1Stream | None = None
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
        stream = H1Stream(channel, channel._ids.next(), self)
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
        parts, self.chunked, keep_alive, bodiless = response_head(
            version, status, zip(flat[0::2], flat[1::2], strict=True), body, more, self.head,
            self.keep_alive and not proto.engine.closing, proto.engine.clock.header)
        self.head = bodiless
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
        parts.append(framed(body, more, self.chunked))
        proto.write(b"".join(parts))
        self._sent(len(body), more)

    def _body(self, chunk: bytes, more: bool) -> None:
        if self.done:
            return
        if not self.head:  # HEAD, 204, 304: the head was the whole answer
            self.proto.write(framed(chunk, more, self.chunked))
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


class H1Stream(Stream):
    """A stream whose frames go straight to its exchange (no inbox, no waiter)."""

    __slots__ = ("exchange",)

    def __init__(self, channel, sid: int, exchange: Exchange) -> None:
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
