"""What a worker reports about itself to the main side: loop utilization, memory.

:class:`MeteredSelector` counts the time the event loop sleeps in ``select``;
event-loop utilization (ELU) is the rest.  :func:`report_health` sends a
HEALTH frame every interval, from the loop itself, so a loop that is blocked
sends nothing, and that silence is what the main side notices.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import sys
import threading
import time

from watt.channel import protocol as p


class MeteredSelector(selectors.DefaultSelector):
    """The loop's selector, counting nanoseconds spent waiting (idle)."""

    def __init__(self) -> None:
        super().__init__()
        self.idle_ns = 0

    def select(self, timeout=None):
        start = time.perf_counter_ns()
        try:
            return super().select(timeout)
        finally:
            self.idle_ns += time.perf_counter_ns() - start


def _memory_bytes(own_process: bool) -> int:
    """Resident memory of a process worker; -1 for a subinterpreter, whose memory
    cannot be told apart from the process's without tracing every allocation."""
    if not own_process:
        return -1
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return -1


async def report_health(channel, selector: MeteredSelector, interval: float,
                        own_process: bool) -> None:
    """Send ``(HEALTH, 0, elu_permille, memory_bytes)`` every ``interval`` seconds."""
    last_wall = time.perf_counter_ns()
    last_idle = selector.idle_ns
    while True:
        await asyncio.sleep(interval)
        wall = time.perf_counter_ns()
        idle = selector.idle_ns
        elapsed = max(wall - last_wall, 1)
        elu = max(0, min(1000, 1000 - (idle - last_idle) * 1000 // elapsed))
        last_wall, last_idle = wall, idle
        channel.send((p.HEALTH, 0, int(elu), _memory_bytes(own_process)))


class ChannelWriter:
    """``sys.stdout``/``sys.stderr`` of a worker: each line becomes a LOG frame.

    Lines reach the main side, which writes them once, tagged with the
    application and worker.  Writes may come from any thread (a WSGI pool);
    frames are sent from the loop's thread, as the channel requires.
    """

    def __init__(self, channel, loop: asyncio.AbstractEventLoop, level: str, fallback) -> None:
        self._channel = channel
        self._loop = loop
        self._level = level
        self._fallback = fallback  # the original stream, once the channel is gone
        self._buffer = ""
        self._thread = threading.get_ident()
        self.encoding = "utf-8"
        self.errors = "replace"

    def write(self, text: str) -> int:
        self._buffer += text
        if "\n" in self._buffer:
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        frame = (p.LOG, 0, self._level, line)
        if self._channel.lost or self._loop.is_closed():
            self._fallback.write(line + "\n")
        elif threading.get_ident() == self._thread:
            self._channel.send(frame)
        else:
            try:
                self._loop.call_soon_threadsafe(self._channel.send, frame)
            except RuntimeError:  # the loop closed meanwhile
                self._fallback.write(line + "\n")

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._emit(line)

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fallback.fileno()


class _LogHandler(logging.Handler):
    """The application's stdlib logging records, as LOG frames with their level."""

    def __init__(self, writer_for_level) -> None:
        super().__init__()
        self._writer_for_level = writer_for_level
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer_for_level(record.levelname, self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into the app
            self.handleError(record)


def capture_output(channel, loop: asyncio.AbstractEventLoop):
    """Route this worker's print/stderr and stdlib logging to the main side.

    Returns a function that restores the original streams."""
    original = (sys.stdout, sys.stderr)
    sys.stdout = ChannelWriter(channel, loop, "INFO", original[0])
    sys.stderr = ChannelWriter(channel, loop, "WARNING", original[1])

    writers: dict[str, ChannelWriter] = {}

    def send_record(level: str, text: str) -> None:
        writer = writers.get(level)
        if writer is None:
            writer = writers[level] = ChannelWriter(channel, loop, level, original[1])
        writer.write(text + "\n")

    handler = _LogHandler(send_record)
    logging.getLogger().addHandler(handler)

    def restore() -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, ChannelWriter):
                stream.flush()
        sys.stdout, sys.stderr = original
        logging.getLogger().removeHandler(handler)

    return restore
