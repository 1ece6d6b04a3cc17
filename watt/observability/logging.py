"""Logs of the runtime and of every worker, written once, by the main process.

Workers build their lines themselves (``watt/worker/telemetry.py``): a JSON
object per line, already filtered by the application's level and redacted,
so that the main interpreter — whose loop every request crosses — only
writes them.  The runtime's own messages go through loguru into the same
:class:`LogHub`, in the same format.

Where lines go: stdout (JSON lines; readable coloured lines when stdout is a
terminal or ``logger.pretty`` is set), optionally a rotating file
(``logger.file``, rotated by the standard library's handlers), and a ring of
recent lines that ``watt logs`` reads and follows through the management API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import os
import re
import socket
import sys
import time
from collections import deque
from collections.abc import Callable

from loguru import logger

from ..config_telemetry import DEFAULT_REDACT, LogFileConfig, LoggerConfig
from ..errors import ConfigError
from ..worker.telemetry import LEVELS, Redactor, extra_members, json_line, loguru_text

_encode = json.encoder.encode_basestring
_COLOURS = {"trace": "\x1b[2m", "debug": "\x1b[34m", "info": "\x1b[32m", "success": "\x1b[32m",
            "warning": "\x1b[33m", "warn": "\x1b[33m", "error": "\x1b[31m",
            "critical": "\x1b[1;31m", "fatal": "\x1b[1;31m"}
_SHOWN = ("level", "time", "pid", "hostname", "app", "worker", "msg")


class LogHub:
    """Where every log line of the process is written; one per process (:data:`hub`)."""

    def __init__(self) -> None:
        self.level = LEVELS["info"]
        self.pretty = False
        self.redact = Redactor(DEFAULT_REDACT)
        self.recent: deque[str] = deque(maxlen=2000)
        self._file: logging.Handler | None = None
        self._file_level = 0
        self._subscribers: set[asyncio.Queue] = set()
        self._listeners: list[Callable[[str], None]] = []
        self._flush_pending = False
        self._handler_id: int | None = None
        self._prefix = f',"pid":{os.getpid()},"hostname":{_encode(socket.gethostname())}'

    # -- set-up ------------------------------------------------------------------------
    def configure(self, config: LoggerConfig | None = None, *, level: str | None = None,
                  pretty: bool | None = None) -> None:
        """Apply ``config`` (the ``logger`` section); ``level``/``pretty`` override it."""
        config = config or LoggerConfig()
        self.level = LEVELS[(level or config.level).lower()]
        if pretty is None:
            pretty = config.pretty
        self.pretty = _isatty(sys.stdout) if pretty is None else pretty
        self.redact = Redactor(config.redact_paths(), config.censor())
        if self.recent.maxlen != config.buffer:
            self.recent = deque(self.recent, maxlen=config.buffer)
        self._open_file(config.file, config.level if level is None else level)
        self._install_loguru()

    def _open_file(self, file: LogFileConfig | None, level: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if file is None:
            return
        self._file = file_handler(file)
        self._file_level = LEVELS[(file.level or level).lower()]

    def _install_loguru(self) -> None:
        """The runtime's own messages (loguru) become lines of this hub.  Only our
        handler and loguru's default one are replaced: sinks others added stay."""
        for handler_id in (self._handler_id, 0):
            if handler_id is not None:
                try:
                    logger.remove(handler_id)
                except ValueError:
                    pass
        self._handler_id = logger.add(self._from_loguru, format="{message}", catch=True,
                                      level=self.level, backtrace=False, diagnose=False)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- lines in -------------------------------------------------------------------------
    def write(self, level: str, line: str) -> None:
        """One complete JSON line (from a worker: already filtered and redacted)."""
        if self.pretty:
            sys.stdout.write(render(line, colour=_isatty(sys.stdout)) + "\n")
        else:
            sys.stdout.write(line + "\n")
        self._schedule_flush()
        if self._file is not None and LEVELS.get(level, 20) >= self._file_level:
            self._file.handle(logging.makeLogRecord({"msg": line, "levelno": 20}))
        self.recent.append(line)
        for queue in self._subscribers:
            if queue.full():  # a slow reader loses its oldest lines, never the runtime
                queue.get_nowait()
            queue.put_nowait(line)
        for listener in self._listeners:
            listener(line)

    def write_many(self, levels: tuple[str, ...], lines: tuple[str, ...]) -> None:
        """A worker's batch of lines (one LOG frame), written with one call."""
        if self.pretty or self._file is not None or self._subscribers or self._listeners:
            for level, line in zip(levels, lines, strict=False):
                self.write(level, line)
            return
        sys.stdout.write("\n".join(lines) + "\n")
        self._schedule_flush()
        self.recent.extend(lines)

    def _schedule_flush(self) -> None:
        """Flush once per loop iteration, not once per line."""
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            sys.stdout.flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        try:
            sys.stdout.flush()
        except (OSError, ValueError):  # stdout closed (a pipe whose reader left)
            pass

    def _from_loguru(self, message) -> None:
        record = message.record
        level = record["level"].name.lower()
        extra = dict(record["extra"])
        head = self._prefix + ',"app":' + _encode(str(extra.pop("app", "watt")))
        worker = extra.pop("worker", None)
        if worker is not None:
            head += ',"worker":' + json.dumps(worker)
        self.write(level, json_line(level, int(record["time"].timestamp() * 1000), head,
                                    loguru_text(record), extra_members(self.redact, extra)))

    # -- lines out ------------------------------------------------------------------------
    def subscribe(self, size: int = 10_000) -> asyncio.Queue:
        """A queue that receives every line from now on (``watt logs -f``)."""
        queue: asyncio.Queue = asyncio.Queue(size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    def listen(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(line)`` for every line; returns the function that stops it."""
        self._listeners.append(callback)

        def stop() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return stop


def render(line: str, colour: bool = False) -> str:
    """A JSON log line as a readable one: ``12:00:01.123 INFO  app#0 msg  key=value``."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    level = str(record.get("level", "info"))
    stamp = record.get("time")
    when = (time.strftime("%H:%M:%S", time.localtime(stamp / 1000)) + f".{stamp % 1000:03d}"
            if isinstance(stamp, int) else "")
    who = str(record.get("app", ""))
    if record.get("worker") is not None:
        who += f"#{record['worker']}"
    extras = " ".join(f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
                      for key, value in record.items() if key not in _SHOWN)
    name = f"{level.upper():<7}"
    if colour:
        name = f"{_COLOURS.get(level, '')}{name}\x1b[0m"
        who = f"\x1b[36m{who}\x1b[0m"
        extras = f"\x1b[2m{extras}\x1b[0m" if extras else ""
    text = f"{when} {name} {who} {record.get('msg', '')}"
    return f"{text}  {extras}" if extras else text


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000 ** 2, "mib": 1024 ** 2, "gb": 1000 ** 3,
          "gib": 1024 ** 3}
_PERIODS = {"hourly": "H", "daily": "D", "midnight": "midnight", "weekly": "W0"}


def file_handler(file: LogFileConfig) -> logging.Handler:
    """A rotating file handler (the standard library's) for ``logger.file``."""
    os.makedirs(os.path.dirname(file.path) or ".", exist_ok=True)
    rotation = file.rotation.strip().lower()
    try:
        if rotation in _PERIODS:
            handler: logging.Handler = logging.handlers.TimedRotatingFileHandler(
                file.path, when=_PERIODS[rotation], backupCount=file.retention,
                encoding="utf-8")
        elif size := _SIZE.match(rotation):
            max_bytes = int(float(size[1]) * _UNITS[(size[2] or "b").lower()])
            handler = logging.handlers.RotatingFileHandler(
                file.path, maxBytes=max_bytes, backupCount=file.retention, encoding="utf-8")
        else:
            raise ConfigError(f"`logger.file.rotation`: {file.rotation!r} is neither a size "
                              "(`10 MB`) nor a period (hourly, daily, midnight, weekly)",
                              code="WATT_CONFIG_INVALID", key="logger.file.rotation")
    except OSError as exc:
        raise ConfigError(f"`logger.file.path`: cannot open {file.path}: {exc}",
                          code="WATT_CONFIG_INVALID", key="logger.file.path") from exc
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


#: The process's one log hub.
hub = LogHub()


def configure_logging(level: str | None = None, *, pretty: bool | None = None,
                      config: LoggerConfig | None = None) -> LogHub:
    """Set up the process's logging (before a config is loaded, ``level`` alone)."""
    hub.configure(config, level=level, pretty=pretty)
    return hub
