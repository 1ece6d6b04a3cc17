"""Streams over one channel, on an asyncio loop: used by both sides.

A :class:`Channel` owns a transport and dispatches received frames: control
frames (stream 0) to ``on_control``, frames of a known stream to that
stream's handler, a REQUEST that opens a stream to ``on_request``.  A handler
is anything with ``feed(frame)``: a :class:`Stream` that an ASGI adapter
awaits, or (on the main side) the relay of a mesh call.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable

from . import protocol as p


class StreamClosed(Exception):
    """The peer cancelled or failed the stream; nothing more can be sent."""

    def __init__(self, code: str = "WATT_STREAM_CLOSED", message: str = "stream closed") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Channel:
    """Multiplexes streams over one transport (queue pair or pipe pair)."""

    def __init__(self, transport, side: int) -> None:
        self.transport = transport
        self.side = side
        self.streams: dict[int, object] = {}
        self._ids = p.StreamIds(side)
        self.on_request: Callable[[tuple], None] | None = None
        self.on_control: Callable[[tuple], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        #: Called with each client connection (a CONN frame) the peer never took.
        self.on_unsent_conn: Callable[[tuple], None] | None = None
        self.send = transport.send
        self.lost = False
        self.rejected = 0  # malformed frames dropped (logged)

    def start(self) -> None:
        self.transport.start(self._on_frames, self._on_eof)

    def _on_frames(self, frames: list) -> None:
        streams = self.streams
        for frame in frames:
            try:
                sid = frame[1]
                if sid == 0:
                    if self.on_control is not None:
                        self.on_control(frame)
                    continue
                handler = streams.get(sid)
                if handler is not None:
                    handler.feed(frame)
                elif frame[0] == p.REQUEST and p.opened_by(sid) != self.side:
                    if self.on_request is not None:
                        self.on_request(frame)
                # else: a late frame for a finished stream (CREDIT, CANCEL): drop.
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the rest
                self.rejected += 1
                print(f"[watt] channel: rejected a malformed frame {_short(frame)}: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def _on_eof(self) -> None:
        self.fail_all("WATT_WORKER_DIED", "the channel's peer went away")
        if self.on_lost is not None:
            self.on_lost()

    def next_sid(self) -> int:
        return self._ids.next()

    def open_stream(self) -> Stream:
        """A new stream opened by this side (its REQUEST is the caller's to send)."""
        stream = Stream(self, self._ids.next())
        if self.lost:  # nothing will ever answer: fail now rather than hang
            stream.feed((p.ERROR, stream.sid, "WATT_WORKER_DIED", "the channel's peer is gone"))
            return stream
        self.streams[stream.sid] = stream
        return stream

    def accept_stream(self, sid: int) -> Stream:
        """The stream for a REQUEST the peer opened."""
        stream = Stream(self, sid)
        self.streams[sid] = stream
        return stream

    def receive_pending(self) -> None:
        """Handle what the peer sent before it went away, before failing anything."""
        receive = getattr(self.transport, "receive_pending", None)
        if receive is not None:
            receive()

    def bounce_undelivered(self) -> int:
        """After the peer died: requests it never took get ``WATT_NO_WORKER``,
        which tells their callers they may send them to another worker.
        Returns how many were bounced."""
        take = getattr(self.transport, "take_unsent", None)
        bounced = 0
        for frame in take() if take is not None else ():
            if frame[0] == p.CONN and self.on_unsent_conn is not None:
                self.on_unsent_conn(frame)
            elif frame[0] == p.REQUEST and p.opened_by(frame[1]) == self.side:
                handler = self.streams.pop(frame[1], None)
                if handler is not None:
                    bounced += 1
                    handler.feed((p.ERROR, frame[1], "WATT_NO_WORKER",
                                  "the worker exited before it took the request"))
        return bounced

    def fail_all(self, code: str, message: str) -> None:
        """Fail every open stream, as if the peer had sent ERROR on each."""
        self.lost = True
        handlers = list(self.streams.items())
        self.streams.clear()
        for sid, handler in handlers:
            handler.feed((p.ERROR, sid, code, message))

    def close(self) -> None:
        self.transport.close()


class Stream:
    """One request/response (or WebSocket) exchange as seen by one side."""

    __slots__ = (
        "_credit_waiter",
        "_inbox",
        "_recv_window",
        "_send_window",
        "_waiter",
        "channel",
        "closed_by_peer",
        "finished",
        "peer_done",
        "sid",
    )

    def __init__(self, channel: Channel, sid: int) -> None:
        self.channel = channel
        self.sid = sid
        self._inbox: deque = deque()
        self._waiter: asyncio.Future | None = None
        self._send_window = p.SendWindow()
        self._recv_window = p.RecvWindow()
        self._credit_waiter: asyncio.Future | None = None
        self.closed_by_peer: tuple | None = None  # the CANCEL/ERROR/WS_CLOSE frame
        self.finished = False
        # The peer sent its whole response: it will read no more of our body,
        # so waiting for credit would wait forever (e.g. a 413 before reading).
        self.peer_done = False

    # -- receiving ------------------------------------------------------------
    def feed(self, frame: tuple) -> None:
        kind = frame[0]
        if kind == p.CREDIT:
            if frame[2] > 0:  # a bad credit is the peer's bug: ignore it, keep the batch
                self._send_window.grant(frame[2])
                self._wake_credit()
            return
        if kind in p.TERMINAL and self.closed_by_peer is None:
            self.closed_by_peer = frame
            self._wake_credit()
        elif (kind == p.RESPONSE_BODY and not frame[3]) or (
                kind == p.RESPONSE_START and not frame[5]):
            self.peer_done = True
            self._wake_credit()
        self._inbox.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> tuple:
        """The next frame from the peer (CREDIT frames are handled here)."""
        while not self._inbox:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._inbox.popleft()

    def receive_nowait(self) -> tuple | None:
        return self._inbox.popleft() if self._inbox else None

    def consumed(self, n: int) -> None:
        """The reader used ``n`` bytes of a non-final chunk: return credit in batches."""
        credit = self._recv_window.consumed(n)
        if credit and not self.finished:
            self.channel.send((p.CREDIT, self.sid, credit))

    # -- sending --------------------------------------------------------------
    def send(self, frame: tuple) -> None:
        if not self.finished:
            self.channel.send(frame)

    async def send_data(self, kind: int, data: bytes, more: bool) -> None:
        """Send body bytes as ``kind`` frames, waiting for credit; split into CHUNKs."""
        pieces = p.split_chunks(data)
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            await self.wait_credit()
            self._send_window.consume(len(piece))
            self.channel.send((kind, self.sid, piece, more or i < last))

    async def wait_credit(self) -> None:
        while not self._send_window.can_send():
            if self.closed_by_peer is not None:
                raise StreamClosed(*_closed_reason(self.closed_by_peer))
            if self.peer_done:
                raise StreamClosed("WATT_STREAM_CLOSED",
                                   "the peer answered before reading the whole body")
            self._credit_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._credit_waiter
            finally:
                self._credit_waiter = None
        if self.closed_by_peer is not None and self.closed_by_peer[0] != p.WS_CLOSE:
            raise StreamClosed(*_closed_reason(self.closed_by_peer))

    def charge(self, n: int) -> None:
        """Count ``n`` bytes sent outside :meth:`send_data` (WebSocket messages)."""
        self._send_window.consume(n)

    def _wake_credit(self) -> None:
        waiter = self._credit_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self) -> None:
        """Forget the stream: later frames for it are dropped."""
        if not self.finished:
            self.finished = True
            if self.channel.streams.get(self.sid) is self:
                del self.channel.streams[self.sid]


def _short(frame) -> str:
    text = repr(frame)
    return text if len(text) <= 120 else text[:117] + "..."


def _closed_reason(frame: tuple) -> tuple[str, str]:
    if frame[0] == p.ERROR:
        return frame[2], frame[3]
    if frame[0] == p.CANCEL:
        return "WATT_STREAM_CANCELLED", "the caller went away"
    return "WATT_STREAM_CLOSED", "the WebSocket was closed"
