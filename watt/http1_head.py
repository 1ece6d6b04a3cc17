"""HTTP/1.1 response framing shared by the watt engine (main interpreter) and the
workers that serve the entrypoint's connections themselves (direct mode).

Standard library only: it is imported inside subinterpreters, where httptools
(the main engine's parser) cannot load.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import time

_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
#: Seconds a new connection has to send its first request once shutdown began.
FRESH_GRACE = 1.0
#: Seconds between two checks of the connections' deadlines (one sweep, not one
#: timer per request).
SWEEP = 0.1
NO_BODY_STATUS = frozenset({204, 304})


def status_line(version: bytes, status: int) -> bytes:
    return b"HTTP/%s %d %s\r\n" % (version, status, _REASONS.get(status, b""))


def response_head(version: bytes, status: int, headers, body: bytes, more: bool,
                  head_request: bool, keep_alive: bool,
                  date: bytes) -> tuple[list[bytes], bool, bool, bool]:
    """The head's lines up to its framing header, from the application's status and
    ``(name, value)`` header pairs: ``(parts, chunked, keep_alive, bodiless)``.

    The framing is ours: the app's ``content-length`` is kept (written once), its
    ``transfer-encoding`` and ``date`` are replaced; a body of unknown length is
    chunked on HTTP/1.1 and ends the connection on HTTP/1.0.  The caller adds its
    ``connection`` header and the blank line.
    """
    parts = [status_line(version, status), date]
    length = None
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
                continue  # written below, once
            except ValueError:
                length = None
        elif name == b"connection" and value.lower() == b"close":
            keep_alive = False
        elif name == b"date" or name == b"transfer-encoding":
            continue  # ours (and the framing is ours to choose)
        parts.append(name + b": " + value + b"\r\n")
    bodiless = head_request or status in NO_BODY_STATUS or status < 200
    chunked = False
    if length is not None:
        parts.append(b"content-length: %d\r\n" % length)
    elif not more and not bodiless:
        parts.append(b"content-length: %d\r\n" % len(body))
    elif not bodiless:
        if version == b"1.1":
            chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            keep_alive = False  # HTTP/1.0: the end of the body is the end of the stream
    return parts, chunked, keep_alive, bodiless


def framed(body: bytes, more: bool, chunked: bool) -> bytes:
    """A piece of the body as it goes on the wire (a chunk, and the last chunk)."""
    if not chunked:
        return body
    chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    return chunk if more else chunk + b"0\r\n\r\n"


class DateClock:
    """The Date header line, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self.header = b""
        self.tick()

    def tick(self) -> None:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.header = (b"date: " + email.utils.formatdate(now, usegmt=True).encode()
                           + b"\r\n")


async def sweep(connections, clock: DateClock) -> None:
    """Every :data:`SWEEP` seconds, for ever: the Date header, then each connection's
    ``check_deadlines`` (the engine's and a direct worker's sweeper task)."""
    while True:
        await asyncio.sleep(SWEEP)
        clock.tick()
        now = time.monotonic()
        for conn in list(connections):
            conn.check_deadlines(now)


class Connection:
    """Closing a connection once, whichever side asks first (both protocols)."""

    transport = None
    closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()
