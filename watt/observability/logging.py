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
import os
import socket
import sys
from collections import deque
from collections.abc import Callable

from loguru import logger

from ..config_telemetry import DEFAULT_REDACT, LoggerConfig
from ..config_transports import ConsoleTransport
from ..errors import ConfigError
from ..worker.telemetry import LEVELS, Redactor, extra_members, json_line, loguru_text
from .batch import loop_reporter
from .log_transports import FileOutput, Transport, file_handler, make_transport, render

__all__ = ["LogHub", "configure_logging", "file_handler", "hub", "render"]

_encode = json.encoder.encode_basestring


class LogHub:
    """Where every log line of the process is written; one per process (:data:`hub`)."""

    def __init__(self) -> None:
        self.level = LEVELS["info"]
        self.pretty = False
        self.redact = Redactor(DEFAULT_REDACT)
        self.recent: deque[str] = deque(maxlen=2000)
        self.console_level = 0  # stdout's own level, above what workers already filter
        self.console = True  # False: `logger.transports` lists no console
        self.outputs: list[Transport] = []  # logger.file and logger.transports
        self._plain = True  # stdout alone, JSON, unfiltered: write_many's fast path
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
        self._open_outputs(config, config.level if level is None else level)
        if pretty is None:
            console = next((t for t in config.transports or () if isinstance(
                t, ConsoleTransport)), None)
            if console is not None and console.format is not None:
                self.pretty = console.format == "pretty"
        self._plain = self.console and not self.pretty and not self.console_level \
            and not self.outputs
        self._install_loguru()

    def _open_outputs(self, config: LoggerConfig, level: str) -> None:
        """``logger.file`` and every ``logger.transports`` entry but the console (stdout
        is written here, on the fast path)."""
        self.close()
        self.console, self.console_level = True, 0
        outputs: list[Transport] = []
        try:
            if config.file is not None:
                outputs.append(FileOutput("file", LEVELS[(config.file.level or level).lower()],
                                          config.file, "logger.file"))
            if config.transports is not None:
                consoles = [t for t in config.transports if isinstance(t, ConsoleTransport)]
                if len(consoles) > 1:
                    raise ConfigError("`logger.transports`: at most one console transport",
                                      code="WATT_CONFIG_INVALID", key="logger.transports")
                self.console = bool(consoles)
                if consoles and consoles[0].level is not None:
                    self.console_level = LEVELS[consoles[0].level]
                seen: dict[str, int] = {}
                for index, transport in enumerate(config.transports):
                    if isinstance(transport, ConsoleTransport):
                        continue
                    kind = type(transport).__struct_config__.tag
                    seen[kind] = seen.get(kind, 0) + 1
                    name = transport.name or (kind if seen[kind] == 1 else f"{kind}{seen[kind]}")
                    outputs.append(make_transport(transport, index, name, level, loop_reporter(
                        f"log transport {name!r} failed", stderr=not self.console)))
        except BaseException:
            for output in outputs:
                output.close()
            raise
        self.outputs = outputs

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
        """Close the file and transports (queued lines are sent first); stdout stays."""
        outputs, self.outputs = self.outputs, []
        self._plain = self.console and not self.pretty and not self.console_level
        for output in outputs:
            output.close()

    def transport_counts(self) -> list[tuple[str, str, int, int]]:
        """``(name, type, dropped, failed)`` of each transport, for the metrics."""
        return [(t.name, t.kind, t.dropped, t.failed) for t in self.outputs]

    # -- lines in -------------------------------------------------------------------------
    def write(self, level: str, line: str) -> None:
        """One complete JSON line (from a worker: already filtered and redacted)."""
        number = LEVELS.get(level, 20)
        if self.console and number >= self.console_level:
            if self.pretty:
                sys.stdout.write(render(line, colour=_isatty(sys.stdout)) + "\n")
            else:
                sys.stdout.write(line + "\n")
            self._schedule_flush()
        for output in self.outputs:
            if number >= output.level:
                output.emit(line)
        self.recent.append(line)
        for queue in self._subscribers:
            if queue.full():  # a slow reader loses its oldest lines, never the runtime
                queue.get_nowait()
            queue.put_nowait(line)
        for listener in self._listeners:
            listener(line)

    def write_many(self, levels: tuple[str, ...], lines: tuple[str, ...]) -> None:
        """A worker's batch of lines (one LOG frame), written with one call."""
        if not self._plain or self._subscribers or self._listeners:
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
