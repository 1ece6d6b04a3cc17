"""What a worker reports about itself to the main side: health and log lines.

:class:`MeteredSelector` counts the time the event loop sleeps in ``select``;
event-loop utilization (ELU) is the rest.  :func:`report_health` sends a
HEALTH frame every interval, from the loop itself, so a loop that is blocked
sends nothing, and that silence is what the main side notices.

Log lines are built here, in the worker, as complete JSON objects (level,
time, pid, hostname, app, worker, reqId, traceId, msg and extra fields,
redacted), so the main interpreter only writes them: :class:`LogEmitter`.
Everything the application prints or logs — ``print``, ``sys.stderr``,
stdlib ``logging``, ``loguru`` — goes through it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import selectors
import socket
import sys
import threading
import time

from watt.channel import protocol as p

from .context import current
from .metrics import resident_memory


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
    rss = resident_memory() if own_process else None
    return -1 if rss is None else rss


async def run_check(check, timeout: float) -> int | None:
    """1 or 0: what the application's readiness or liveness function answers (sync or
    async; an exception, or an async check slower than ``timeout``, counts as 0);
    None when the application declares no such check."""
    if check is None:
        return None
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, timeout)
    except Exception as exc:  # noqa: BLE001 - a failing check is a false one
        name = getattr(check, "__qualname__", repr(check))
        print(f"health check {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 0
    return 1 if result else 0


async def report_health(channel, selector: MeteredSelector, interval: float,
                        own_process: bool, ready=None, live=None) -> None:
    """Send ``(HEALTH, 0, elu_permille, memory_bytes, ready, live)`` every ``interval``
    seconds; ``ready``/``live`` are the application's check functions (or None)."""
    last_wall = time.perf_counter_ns()
    last_idle = selector.idle_ns
    while True:
        await asyncio.sleep(interval)
        wall = time.perf_counter_ns()
        idle = selector.idle_ns
        elapsed = max(wall - last_wall, 1)
        elu = max(0, min(1000, 1000 - (idle - last_idle) * 1000 // elapsed))
        last_wall, last_idle = wall, idle
        is_ready = await run_check(ready, interval)
        is_live = await run_check(live, interval)
        channel.send((p.HEALTH, 0, int(elu), _memory_bytes(own_process), is_ready, is_live))


#: Level names and their numbers (stdlib logging's, with loguru's trace/success).
LEVELS = {"trace": 5, "debug": 10, "info": 20, "success": 25, "warning": 30, "warn": 30,
          "error": 40, "critical": 50, "fatal": 50, "silent": 1000}
_encode = json.encoder.encode_basestring  # the C escaper json.dumps uses for str


class Redactor:
    """Censors the values at dotted paths (``req.headers.authorization``; ``*``
    matches any one key; keys compare case-insensitively) in a line's fields."""

    def __init__(self, paths, censor: str = "[Redacted]") -> None:
        self.paths = [tuple(part.lower() for part in path.split(".")) for path in paths]
        self.censor = censor
        self.roots = {path[0] for path in self.paths}

    def __call__(self, fields: dict) -> dict:
        """A copy of ``fields`` with every matching value censored (``fields`` is kept)."""
        if not self.paths or not any(key.lower() in self.roots or "*" in self.roots
                                     for key in fields):
            return fields
        fields = _copy(fields)
        for path in self.paths:
            self._apply(fields, path)
        return fields

    def _apply(self, node, path: tuple) -> None:
        if not isinstance(node, dict):
            return
        head, rest = path[0], path[1:]
        for key in list(node):
            if head != "*" and str(key).lower() != head:
                continue
            if rest:
                self._apply(node[key], rest)
            else:
                node[key] = self.censor


def _copy(value):
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(item) for item in value]
    return value


def json_line(level: str, time_ms: int, head: str, msg: str, members: str = "") -> str:
    """One log line: level and time, ``head`` (the ``,"key":value`` members that
    say where it comes from), the message, then extra ``members``.  Workers and
    the runtime's own messages share it, so every line has one shape."""
    tail = "," + members if members else ""
    return f'{{"level":"{level}","time":{time_ms}{head},"msg":{_encode(msg)}{tail}}}'


def extra_members(redact: Redactor, fields: dict | None) -> str:
    """Extra fields as JSON object members (no braces), redacted; "" for none."""
    if not fields:
        return ""
    return json.dumps(redact(fields), separators=(",", ":"), default=str)[1:-1]


def loguru_text(record) -> str:
    """A loguru record's message, with its exception's traceback when it has one."""
    msg = record["message"]
    if record["exception"] is not None:
        import traceback

        exc = record["exception"]
        msg += "\n" + "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    return msg


class LogEmitter:
    """Builds this worker's log lines and sends them to the main side as LOG frames.

    ``(LOG, 0, level, line)``: ``line`` is a JSON object; the main side writes
    it as it is (or renders it readably on a terminal).  Lines below the
    application's level are dropped here, before they cost a frame.  Safe to
    call from any thread: frames are sent from the loop's thread.
    """

    def __init__(self, channel, loop: asyncio.AbstractEventLoop, app_id: str, worker: int,
                 level: str = "info", redact=(), censor: str = "[Redacted]",
                 fallback=None) -> None:
        self._channel = self.channel = channel
        self._loop = loop
        self._thread = threading.get_ident()
        self.threshold = LEVELS.get(level, 20)
        self.redact = Redactor(redact, censor)
        self._fallback = fallback or sys.__stderr__
        self._levels: list[str] = []
        self._lines: list[str] = []
        self._scheduled = False
        self._static = (f',"pid":{os.getpid()},"hostname":{_encode(socket.gethostname())},'
                        f'"app":{_encode(app_id)},"worker":{int(worker)}')

    def enabled(self, level: str) -> bool:
        return LEVELS.get(level, 20) >= self.threshold

    def line(self, level: str, msg: str, fields: dict | None = None) -> str:
        """The JSON line: fixed fields first, then the request's ids, then extras."""
        head = self._static
        ctx = current.get()
        if ctx is not None:
            if ctx.req_id is not None:
                head += ',"reqId":' + _encode(ctx.req_id)
            if ctx.trace_id is not None:
                head += f',"traceId":{_encode(ctx.trace_id)},"spanId":{_encode(ctx.span_id or "")}'
        return json_line(level, time.time_ns() // 1_000_000, head, msg,
                         extra_members(self.redact, fields))

    def emit(self, level: str, msg: str, fields: dict | None = None) -> None:
        if LEVELS.get(level, 20) >= self.threshold:
            self.send(level, self.line(level, msg, fields))

    def send(self, level: str, line: str) -> None:
        if self._channel.lost or self._loop.is_closed():
            self._fallback.write(line + "\n")
        elif threading.get_ident() == self._thread:
            self._queue(level, line)
        else:
            try:
                self._loop.call_soon_threadsafe(self._queue, level, line)
            except RuntimeError:  # the loop closed meanwhile
                self._fallback.write(line + "\n")

    def _queue(self, level: str, line: str) -> None:
        """Lines of one loop iteration travel in one LOG frame (under load, the
        access lines of many requests), sent when the iteration's work is done."""
        self._levels.append(level)
        self._lines.append(line)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send the lines queued so far: ``(LOG, 0, levels, lines)``, two tuples."""
        self._scheduled = False
        if not self._lines:
            return
        levels, lines = tuple(self._levels), tuple(self._lines)
        self._levels.clear()
        self._lines.clear()
        if self._channel.lost:
            self._fallback.write("".join(line + "\n" for line in lines))
        else:
            self._channel.send((p.LOG, 0, levels, lines))

    def access(self, method: str, path: str, status: int, duration_ms: float,
               ctx=None) -> None:
        """The access log line of one request (level info), built in one go: it is
        written for every request, so it is the line whose cost counts."""
        if self.threshold > 20:
            return
        ids = ""
        if ctx is not None:
            if ctx.req_id is not None:
                ids = ',"reqId":' + _encode(ctx.req_id)
            if ctx.trace_id is not None:
                ids += f',"traceId":"{ctx.trace_id}","spanId":"{ctx.span_id}"'
        path_text = _encode(path)
        line = (f'{{"level":"info","time":{time.time_ns() // 1_000_000}{self._static}{ids},'
                f'"msg":{_encode(f"{method} {path} {status}")},"method":"{method}",'
                f'"path":{path_text},"status":{status},"duration":{duration_ms:.3f}}}')
        if self._thread == threading.get_ident() and not self._channel.lost:
            self._queue("info", line)
        else:
            self.send("info", line)


class ChannelWriter:
    """``sys.stdout``/``sys.stderr`` of a worker: each line becomes a log line.

    Writes may come from any thread (a WSGI pool); :class:`LogEmitter` sends
    frames from the loop's thread, as the channel requires.
    """

    def __init__(self, emitter: LogEmitter, level: str, fallback) -> None:
        self._emitter = emitter
        self._level = level
        self._fallback = fallback  # the original stream
        self._buffer = ""
        self.encoding = "utf-8"
        self.errors = "replace"

    def write(self, text: str) -> int:
        self._buffer += text
        if "\n" in self._buffer:
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._emitter.emit(self._level, line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._emitter.emit(self._level, line)

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fallback.fileno()


#: LogRecord attributes that are not the application's own ``extra`` fields.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class _LogHandler(logging.Handler):
    """The application's stdlib logging records, with their level and extra fields."""

    def __init__(self, emitter: LogEmitter) -> None:
        super().__init__()
        self._emitter = emitter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelname.lower()
            if not self._emitter.enabled(level):
                return
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            fields = {key: value for key, value in vars(record).items()
                      if key not in _RECORD_FIELDS}
            fields["logger"] = record.name
            self._emitter.send(level, self._emitter.line(level, msg, fields))
        except Exception:  # noqa: BLE001 - logging must never raise into the app
            self.handleError(record)


def loguru_sink(emitter: LogEmitter):
    """A loguru sink for an application that logs with loguru: its records, with
    their level and ``bind``/``extra`` fields, become this worker's log lines."""

    def sink(message) -> None:
        record = message.record
        level = record["level"].name.lower()
        if not emitter.enabled(level):
            return
        fields = dict(record["extra"])
        fields["logger"] = record["name"]
        emitter.send(level, emitter.line(level, loguru_text(record), fields))

    return sink


def patch_loguru(module) -> None:
    """Called when the application imports loguru: its default stderr handler
    (id 0) becomes a sink into this worker's log lines."""
    if _emitter is None:
        return
    try:
        module.logger.remove(0)
    except ValueError:
        return  # the application already configured its own handlers
    module.logger.add(loguru_sink(_emitter), level=0, format="{message}", catch=True)


_emitter: LogEmitter | None = None


def capture_output(emitter: LogEmitter):
    """Route this worker's print/stderr, stdlib logging and loguru to the main side.

    Returns a function that restores the original streams."""
    global _emitter
    _emitter = emitter
    original = (sys.stdout, sys.stderr)
    sys.stdout = ChannelWriter(emitter, "info", original[0])
    sys.stderr = ChannelWriter(emitter, "warning", original[1])
    handler = _LogHandler(emitter)
    root = logging.getLogger()
    root.addHandler(handler)  # the app's own logger levels still decide what reaches it
    if "loguru" in sys.modules:
        patch_loguru(sys.modules["loguru"])

    def restore() -> None:
        global _emitter
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, ChannelWriter):
                stream.flush()
        emitter.flush()
        sys.stdout, sys.stderr = original
        root.removeHandler(handler)
        _emitter = None

    return restore
