"""Where log lines go besides standard output: ``logger.transports``.

The :class:`~watt.observability.logging.LogHub` receives every line as JSON
text (workers build them) and hands it to each transport whose level it
reaches.  A file is written in place (the standard library's rotating
handlers, as ``logger.file`` always was); every transport that talks to
something else — syslog, the Elasticsearch/OpenSearch bulk API, a custom
sink — only queues the line in a :class:`~watt.observability.batch.BatchWorker`
and its thread decodes, formats and sends, so a slow or dead destination
never blocks the main loop or a request: when its queue is full, lines are
dropped and counted (``watt_log_lines_dropped_total``).
"""

from __future__ import annotations

import base64
import datetime
import errno
import json
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable

from ..config_transports import (
    PERIODS,
    SIZE,
    ElasticsearchTransport,
    FileTransport,
    SinkTransport,
    SyslogTransport,
    syslog_error,
)
from ..errors import ConfigError
from ..worker.telemetry import LEVELS
from .batch import BatchWorker

ENTRY_POINT_GROUP = "watt.log_transports"

_COLOURS = {"trace": "\x1b[2m", "debug": "\x1b[34m", "info": "\x1b[32m", "success": "\x1b[32m",
            "warning": "\x1b[33m", "warn": "\x1b[33m", "error": "\x1b[31m",
            "critical": "\x1b[1;31m", "fatal": "\x1b[1;31m"}
_SHOWN = ("level", "time", "pid", "hostname", "app", "worker", "msg")


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


# -- file -----------------------------------------------------------------------------
_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000 ** 2, "mib": 1024 ** 2, "gb": 1000 ** 3,
          "gib": 1024 ** 3}


def file_handler(file, key: str = "logger.file") -> logging.Handler:
    """A rotating file handler (the standard library's) for ``logger.file`` or a
    file transport (``path``, ``rotation``, ``retention``)."""
    import logging.handlers  # here: only a file output needs it

    os.makedirs(os.path.dirname(file.path) or ".", exist_ok=True)
    rotation = file.rotation.strip().lower()
    try:
        if rotation in PERIODS:
            handler: logging.Handler = logging.handlers.TimedRotatingFileHandler(
                file.path, when=PERIODS[rotation], backupCount=file.retention,
                encoding="utf-8")
        elif size := SIZE.match(rotation):
            max_bytes = int(float(size[1]) * _UNITS[(size[2] or "b").lower()])
            handler = logging.handlers.RotatingFileHandler(
                file.path, maxBytes=max_bytes, backupCount=file.retention, encoding="utf-8")
        else:
            raise ConfigError(f"`{key}.rotation`: {file.rotation!r} is neither a size "
                              "(`10 MB`) nor a period (hourly, daily, midnight, weekly)",
                              code="WATT_CONFIG_INVALID", key=f"{key}.rotation")
    except OSError as exc:
        raise ConfigError(f"`{key}.path`: cannot open {file.path}: {exc}",
                          code="WATT_CONFIG_INVALID", key=f"{key}.path") from exc
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class Transport:
    """One destination: ``emit`` is called on the main loop for every line at or
    above ``level`` and must return at once."""

    kind = "transport"

    def __init__(self, name: str, level: int) -> None:
        self.name = name
        self.level = level

    def emit(self, line: str) -> None:
        raise NotImplementedError

    @property
    def dropped(self) -> int:
        return 0

    @property
    def failed(self) -> int:
        return 0

    def close(self) -> None:
        pass


class FileOutput(Transport):
    kind = "file"

    def __init__(self, name: str, level: int, config: FileTransport, key: str) -> None:
        super().__init__(name, level)
        self._handler = file_handler(config, key)
        self._pretty = getattr(config, "format", "json") == "pretty"  # logger.file: JSON

    def emit(self, line: str) -> None:
        text = render(line) if self._pretty else line
        self._handler.handle(logging.makeLogRecord({"msg": text, "levelno": 20}))

    def close(self) -> None:
        self._handler.close()


class QueuedOutput(Transport):
    """A transport whose sending happens on a thread: ``emit`` only queues."""

    def __init__(self, name: str, level: int, config,
                 report: Callable[[Exception], None]) -> None:
        super().__init__(name, level)
        self.worker = BatchWorker(
            f"log-{name}", self.send, batch_size=config.batch_size,
            delay=config.flush_interval / 1000, max_queue=config.queue_size, on_error=report)

    def emit(self, line: str) -> None:
        self.worker.offer(line)

    def send(self, lines: list[str]) -> None:
        raise NotImplementedError

    @property
    def dropped(self) -> int:
        return self.worker.dropped

    @property
    def failed(self) -> int:
        return self.worker.failed

    def close(self) -> None:
        self.worker.close()


# -- syslog (RFC 5424) -------------------------------------------------------------------
_FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
               "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
               **{f"local{i}": 16 + i for i in range(8)}}
_SEVERITIES = {"trace": 7, "debug": 7, "info": 6, "success": 5, "warning": 4, "warn": 4,
               "error": 3, "critical": 2, "fatal": 2}


def _utc(record: dict) -> datetime.datetime:
    """A line's ``time`` (ms since the epoch), or now when it has none."""
    stamp = record.get("time")
    return (datetime.datetime.fromtimestamp(stamp / 1000, datetime.UTC)
            if isinstance(stamp, int) else datetime.datetime.now(datetime.UTC))


def _rfc3339(when: datetime.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header_field(value, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or the nil value ``-``."""
    text = "".join(c for c in str(value) if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def syslog_message(line: str, facility: str = "user", app_name: str | None = None,
                   pretty: bool = False) -> bytes:
    """One RFC 5424 message for a JSON log line:
    ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`` (pure)."""
    try:
        record = json.loads(line)
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    severity = _SEVERITIES.get(str(record.get("level", "info")), 6)
    timestamp = _rfc3339(_utc(record))
    msg_id = "access" if "status" in record and "duration" in record else "-"
    head = (f"<{_FACILITIES[facility] * 8 + severity}>1 {timestamp} "
            f"{_header_field(record.get('hostname') or socket.gethostname(), 255)} "
            f"{_header_field(app_name or record.get('app', 'watt'), 48)} "
            f"{_header_field(record.get('pid', os.getpid()), 128)} {msg_id} -")
    return (head + " " + (render(line) if pretty else line)).encode("utf-8")


def _syslog_socket(address: str) -> tuple[socket.socket, bool]:
    """A connected socket for ``address``, and whether it is a stream."""
    parts = urllib.parse.urlsplit(address)
    if parts.scheme == "unix":
        path = parts.path
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.connect(path)
                return sock, kind == socket.SOCK_STREAM
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EPROTOTYPE:  # a stream socket: try that
                    raise
        raise OSError(f"cannot connect to {path}")
    kind = socket.SOCK_STREAM if parts.scheme == "tcp" else socket.SOCK_DGRAM
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10) \
        if kind == socket.SOCK_STREAM else socket.socket(
            socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET, kind)
    if kind == socket.SOCK_DGRAM:
        sock.connect((parts.hostname, parts.port))
    return sock, kind == socket.SOCK_STREAM


def check_syslog_address(address: str, key: str) -> None:
    if message := syslog_error(address):
        raise ConfigError(f"`{key}.address`: {message}", code="WATT_CONFIG_INVALID",
                          key=f"{key}.address")


class SyslogOutput(QueuedOutput):
    kind = "syslog"

    def __init__(self, name: str, level: int, config: SyslogTransport, report) -> None:
        self._config = config
        self._sock: socket.socket | None = None
        self._stream = False
        super().__init__(name, level, config, report)

    def send(self, lines: list[str]) -> None:
        config = self._config
        if self._sock is None:
            self._sock, self._stream = _syslog_socket(config.address)
        try:
            for line in lines:
                message = syslog_message(line, config.facility, config.app_name,
                                         config.format == "pretty")
                if self._stream:  # RFC 6587 octet counting
                    self._sock.sendall(b"%d " % len(message) + message)
                else:
                    self._sock.send(message)
        except OSError:
            self._sock.close()  # reconnect with the next batch
            self._sock = None
            raise

    def close(self) -> None:
        super().close()
        if self._sock is not None:
            self._sock.close()


# -- Elasticsearch / OpenSearch bulk API ---------------------------------------------------
def bulk_body(lines: list[str], index: str) -> bytes:
    """The ``_bulk`` request body: a ``create`` action line then the document, for
    each line, newline-terminated (NDJSON); ``@timestamp`` added (pure)."""
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            doc = {"msg": line}
        if not isinstance(doc, dict):
            doc = {"msg": doc}
        when = _utc(doc)
        doc["@timestamp"] = _rfc3339(when)
        out.append(json.dumps({"create": {"_index": when.strftime(index)}},
                              separators=(",", ":")))
        out.append(json.dumps(doc, separators=(",", ":"), default=str))
    return ("\n".join(out) + "\n").encode("utf-8")


class BulkOutput(QueuedOutput):
    kind = "elasticsearch"

    def __init__(self, name: str, level: int, config: ElasticsearchTransport, report) -> None:
        self._config = config
        self.kind = type(config).__struct_config__.tag  # elasticsearch or opensearch
        self._url = config.url.rstrip("/") + "/_bulk"
        headers = {"content-type": "application/x-ndjson", **config.headers}
        if config.api_key:
            headers["authorization"] = f"ApiKey {config.api_key}"
        elif config.username is not None:
            pair = f"{config.username}:{config.password or ''}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._headers = headers
        super().__init__(name, level, config, report)

    def send(self, lines: list[str]) -> None:
        import urllib.request  # here, not at start: http.client, email, ... for one output

        request = urllib.request.Request(self._url, data=bulk_body(lines, self._config.index),
                                         headers=self._headers, method="POST")
        with urllib.request.urlopen(request, timeout=self._config.timeout / 1000) as reply:
            answer = reply.read()
        try:
            result = json.loads(answer) if answer else {}
        except ValueError:
            result = {}
        if isinstance(result, dict) and result.get("errors"):
            failed = [item for item in result.get("items", ())
                      if next(iter(item.values()), {}).get("error")]
            raise OSError(f"the bulk API refused {len(failed)} of {len(lines)} lines: "
                          f"{next(iter(failed[0].values()))['error'] if failed else ''}")


# -- custom sinks ---------------------------------------------------------------------------
class SinkMessage(str):
    """What a custom sink receives: the text (with a trailing newline), as a loguru
    message is; ``record`` is the line's fields, decoded."""

    record: dict


def load_sink(config: SinkTransport, key: str) -> Callable[[SinkMessage], object]:
    """``module:callable`` (the sink itself), or an entry point of
    ``watt.log_transports`` (a factory called with ``options`` that returns it)."""
    import importlib.metadata

    spec = config.sink
    if ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            target = importlib.import_module(module)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"`{key}.sink`: cannot load {spec!r}: {exc}",
                              code="WATT_LOG_SINK_NOT_FOUND", key=f"{key}.sink") from exc
    else:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=spec)
        if not found:
            known = sorted(ep.name for ep in importlib.metadata.entry_points(
                group=ENTRY_POINT_GROUP))
            raise ConfigError(f"`{key}.sink`: no log transport {spec!r} is installed (entry "
                              f"point group {ENTRY_POINT_GROUP}; installed: "
                              f"{', '.join(known) or 'none'}); or name one as module:callable",
                              code="WATT_LOG_SINK_NOT_FOUND", key=f"{key}.sink")
        target = next(iter(found)).load()(dict(config.options))
    if not callable(target) and callable(getattr(target, "write", None)):
        target = target.write
    if not callable(target):
        raise ConfigError(f"`{key}.sink`: {spec!r} is not callable and has no write()",
                          code="WATT_LOG_SINK_NOT_FOUND", key=f"{key}.sink")
    return target


class SinkOutput(QueuedOutput):
    kind = "sink"

    def __init__(self, name: str, level: int, config: SinkTransport, key: str,
                 report) -> None:
        self._sink = load_sink(config, key)
        self._pretty = config.format == "pretty"
        super().__init__(name, level, config, report)

    def send(self, lines: list[str]) -> None:
        for line in lines:
            message = SinkMessage((render(line) if self._pretty else line) + "\n")
            try:
                message.record = json.loads(line)
            except ValueError:
                message.record = {"msg": line}
            self._sink(message)


def make_transport(config, index: int, name: str, default_level: str,
                   report: Callable[[Exception], None]) -> Transport:
    """The transport for ``logger.transports[index]`` (not console: the hub owns stdout)."""
    key = f"logger.transports[{index}]"
    level = LEVELS[(config.level or default_level).lower()]
    if isinstance(config, FileTransport):
        return FileOutput(name, level, config, key)
    if isinstance(config, SyslogTransport):
        check_syslog_address(config.address, key)
        return SyslogOutput(name, level, config, report)
    if isinstance(config, ElasticsearchTransport):
        return BulkOutput(name, level, config, report)
    return SinkOutput(name, level, config, key, report)
