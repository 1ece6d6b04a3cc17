"""Configuration of where logs and spans go: ``logger.transports`` and ``telemetry.batch``.

Part of the schema in :mod:`watt.config` (through ``config_telemetry``); the
same rules hold: unknown keys are errors, keys are camelCase.  A transport is
a tagged union on ``type``, so each kind accepts exactly its own keys.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Annotated, Literal

import msgspec

LogLevel = Literal["trace", "debug", "info", "warning", "warn", "error", "critical", "fatal",
                   "silent"]
LogFormat = Literal["json", "pretty"]
SyslogFacility = Literal["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
                         "uucp", "cron", "authpriv", "ftp", "local0", "local1", "local2",
                         "local3", "local4", "local5", "local6", "local7"]


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Transport(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True,
                 kw_only=True,
                 tag_field="type"):
    level: Annotated[LogLevel | None, _doc("Lowest level this transport writes (default: "
                                           "`logger.level`, which decides what reaches any "
                                           "transport).")] = None
    name: Annotated[str | None, _doc("The `transport` label of this transport's metrics "
                                     "(default: its type, numbered when repeated).")] = None


class _Queued(_Transport, frozen=True, kw_only=True):
    queue_size: Annotated[int, _doc("Lines waiting to be sent; when full, new lines are "
                                    "dropped and counted (`watt_log_lines_dropped_total`).",
                                    ge=1)] = 10_000
    batch_size: Annotated[int, _doc("Lines sent together.", ge=1)] = 500
    flush_interval: Annotated[int, _doc("Milliseconds a line may wait for its batch to fill.",
                                        ge=1)] = 1000


class ConsoleTransport(_Transport, frozen=True, tag="console"):
    """Standard output."""

    format: Annotated[LogFormat | None, _doc("json (one object per line) or pretty (readable, "
                                             "coloured on a terminal); default: "
                                             "`logger.pretty`.")] = None


class FileTransport(_Transport, frozen=True, tag="file"):
    """A file rotated by size or time, keeping `retention` old files."""

    path: Annotated[str, _doc("The log file, relative to the config file.")]
    rotation: Annotated[str, _doc("A size (`10 MB`, `500 KB`) or a period (`hourly`, `daily`, "
                                  "`midnight`, `weekly`).")] = "10 MB"
    retention: Annotated[int, _doc("Rotated files kept.", ge=0)] = 5
    format: Annotated[LogFormat, _doc("json or pretty (never coloured).")] = "json"


class SyslogTransport(_Queued, frozen=True, tag="syslog"):
    """RFC 5424 messages to a syslog daemon."""

    address: Annotated[str, _doc("`unix:///dev/log` (a unix socket, datagram or stream), "
                                 "`udp://host:514` or `tcp://host:601`.")] = "unix:///dev/log"
    facility: Annotated[SyslogFacility, _doc("The syslog facility.")] = "user"
    app_name: Annotated[str | None, _doc("APP-NAME of every message (default: the line's "
                                         "`app`).")] = None
    format: Annotated[LogFormat, _doc("MSG as the JSON line or as a readable line.")] = "json"


class ElasticsearchTransport(_Queued, frozen=True, tag="elasticsearch"):
    """Batches of lines to the bulk API (`POST {url}/_bulk`, NDJSON)."""

    url: Annotated[str, _doc("The cluster's base URL, e.g. http://127.0.0.1:9200.",
                             pattern=r"^https?://")]
    index: Annotated[str, _doc("Index or data stream; `%Y`, `%m`, `%d` are the line's UTC "
                               "date.")] = "watt-logs"
    username: Annotated[str | None, _doc("Basic auth user (with `password`).")] = None
    password: Annotated[str | None, _doc("Basic auth password (use a `${VAR}` "
                                         "placeholder).")] = None
    api_key: Annotated[str | None, _doc("Sent as `Authorization: ApiKey <apiKey>`.")] = None
    headers: Annotated[dict[str, str], _doc("Extra request headers.")] = {}
    timeout: Annotated[int, _doc("Milliseconds a bulk request may take.", ge=1)] = 10_000


class OpenSearchTransport(ElasticsearchTransport, frozen=True, tag="opensearch"):
    """The same bulk API, as OpenSearch serves it."""


class SinkTransport(_Queued, frozen=True, tag="sink"):
    """A loguru-style sink: a callable (or an object with `write`) called with each line."""

    sink: Annotated[str, _doc("`module:callable`, or the name of an entry point in the group "
                              "`watt.log_transports` (a factory called with `options`).")]
    options: Annotated[dict, _doc("Passed to an entry point's factory.")] = {}
    format: Annotated[LogFormat, _doc("The text passed: the JSON line or a readable "
                                      "line.")] = "json"


LogTransport = (ConsoleTransport | FileTransport | SyslogTransport | ElasticsearchTransport
                | OpenSearchTransport | SinkTransport)


#: A size rotation (``10 MB``, ``500 KiB``, ``1048576``) and the period rotations.
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
PERIODS = {"hourly": "H", "daily": "D", "midnight": "midnight", "weekly": "W0"}


def rotation_error(rotation: str) -> str | None:
    """Why ``rotation`` is unusable, or None (pure; the key path is the caller's)."""
    if rotation.strip().lower() in PERIODS or SIZE.match(rotation):
        return None
    return (f"{rotation!r} is neither a size (`10 MB`) nor a period (hourly, daily, "
            "midnight, weekly)")


def syslog_error(address: str) -> str | None:
    """Why a syslog ``address`` is unusable, or None (pure)."""
    parts = urllib.parse.urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if (parts.scheme == "unix" and parts.path) or (
            parts.scheme in ("udp", "tcp") and parts.hostname and port):
        return None
    return f"{address!r} is not unix:///path, udp://host:port or tcp://host:port"


def transport_paths(transports: list, base_dir: str) -> list:
    """File transports' paths made absolute against the config file's folder."""
    return [msgspec.structs.replace(t, path=os.path.normpath(os.path.join(base_dir, t.path)))
            if isinstance(t, FileTransport) else t for t in transports]


class SpanBatchConfig(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    """How exporters that send over the network (otlp, zipkin) batch spans."""

    max_queue_size: Annotated[int, _doc("Spans waiting to be exported; more are dropped "
                                        "(counted in `watt_spans_dropped_total`).",
                                        ge=1)] = 2048
    max_export_batch_size: Annotated[int, _doc("Spans per export request.", ge=1)] = 512
    schedule_delay: Annotated[int, _doc("Milliseconds between two exports of a partial "
                                        "batch.", ge=1)] = 5000
    export_timeout: Annotated[int, _doc("Milliseconds an export request may take.",
                                        ge=1)] = 30_000
