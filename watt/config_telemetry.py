"""Configuration sections for what Watt observes: ``logger``, ``metrics``, ``telemetry``.

Part of the schema in :mod:`watt.config` (kept apart only to keep that module
readable); the same rules hold: unknown keys are errors, keys are camelCase.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from watt.config_transports import LogTransport, SpanBatchConfig

_URL = r"^https?://"  # an address Watt sends to over HTTP


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


LogLevel = Literal["trace", "debug", "info", "warning", "warn", "error", "critical", "fatal",
                   "silent"]

#: Redacted unless the config says otherwise: credentials in request and response headers.
DEFAULT_REDACT = ("req.headers.authorization", "req.headers.cookie",
                  "req.headers.proxy-authorization", "res.headers.set-cookie")


class RedactConfig(_Section):
    """Fields censored in every log line before it is written."""

    paths: Annotated[
        list[str], _doc("Dotted paths into a log line's fields (`req.headers.authorization`); "
                        "`*` matches any one key. Keys match case-insensitively.")
    ] = msgspec.field(default_factory=lambda: list(DEFAULT_REDACT))
    censor: Annotated[str, _doc("What replaces a censored value.")] = "[Redacted]"


class LogFileConfig(_Section):
    """Also write every log line, as JSON, to a file that rotates."""

    path: Annotated[str, _doc("The log file, relative to the config file.")]
    rotation: Annotated[
        str, _doc("When to start a new file: a size (`10 MB`, `500 KB`) or a period "
                  "(`hourly`, `daily`, `midnight`, `weekly`).")
    ] = "10 MB"
    retention: Annotated[int, _doc("Rotated files kept.", ge=0)] = 5
    level: Annotated[LogLevel | None, _doc("Lowest level written to the file (default: "
                                           "`logger.level`).")] = None


class LoggerConfig(_Section):
    """Logs of the runtime and of every worker, written once by the main process."""

    level: Annotated[LogLevel, _doc("Lowest level written.")] = "info"
    pretty: Annotated[
        bool | None, _doc("Readable coloured lines instead of JSON (default: when stdout is a "
                          "terminal).")
    ] = None
    access_log: Annotated[bool, _doc("One line per request served by each application.")] = True
    redact: Annotated[
        list[str] | RedactConfig,
        _doc("Paths to censor (a list), or `{paths, censor}`."),
    ] = RedactConfig()
    file: Annotated[LogFileConfig | None, _doc("Also write to a rotating file.")] = None
    transports: Annotated[
        list[LogTransport] | None,
        _doc("Where lines go, each with its own level and format: console, file, syslog, "
             "elasticsearch, opensearch, sink. Without it: stdout (and `file`).")] = None
    buffer: Annotated[
        int, _doc("Recent lines kept in memory for `watt logs`.", ge=0)] = 2000

    def redact_paths(self) -> list[str]:
        return list(self.redact) if isinstance(self.redact, list) else list(self.redact.paths)

    def censor(self) -> str:
        return "[Redacted]" if isinstance(self.redact, list) else self.redact.censor


class AppLoggerConfig(_Section):
    """An application's own logging settings."""

    level: Annotated[LogLevel | None, _doc("Lowest level written for this application "
                                           "(default: `logger.level`).")] = None


class MetricsAuthConfig(_Section):
    """HTTP basic authentication for `/metrics`."""

    username: Annotated[str, _doc("User name.")]
    password: Annotated[str, _doc("Password (use a `${VAR}` placeholder).")]


class MetricsPushConfig(_Section):
    """Push the metrics to a Prometheus Pushgateway as well."""

    url: Annotated[str, _doc("The Pushgateway's address, e.g. http://127.0.0.1:9091.",
                             pattern=_URL)]
    job: Annotated[str, _doc("The `job` grouping key.")] = "watt"
    interval: Annotated[int, _doc("Milliseconds between two pushes.", ge=100)] = 15000


class MetricsOtlpConfig(_Section):
    """Push the metrics to an OpenTelemetry collector as OTLP over HTTP/protobuf."""

    endpoint: Annotated[str, _doc("The collector's metrics URL, e.g. "
                                  "http://127.0.0.1:4318/v1/metrics.", pattern=_URL)]
    headers: Annotated[dict[str, str], _doc("Extra request headers (e.g. an API key).")] = {}
    interval: Annotated[int, _doc("Milliseconds between two pushes.", ge=100)] = 15000
    service_name: Annotated[str, _doc("The `service.name` resource attribute.")] = "watt"


class MetricsConfig(_Section):
    """The runtime's own HTTP server, off the entrypoint: /metrics, /ready, /live."""

    enabled: Annotated[bool, _doc("Serve it.")] = False
    hostname: Annotated[str, _doc("Address to bind.")] = "127.0.0.1"
    port: Annotated[int, _doc("TCP port; 0 picks a free one.", ge=0, le=65535)] = 9090
    endpoint: Annotated[str, _doc("Path of the Prometheus metrics.", pattern=r"^/")] = "/metrics"
    auth: Annotated[MetricsAuthConfig | None, _doc("Basic auth for the metrics path.")] = None
    labels: Annotated[dict[str, str], _doc("Constant labels added to every metric.")] = {}
    collection_interval: Annotated[
        int, _doc("Milliseconds during which a scrape reuses the workers' last numbers "
                  "instead of asking them again (0: ask on every scrape).", ge=0)] = 0
    push: Annotated[MetricsPushConfig | None, _doc("Also push to a Pushgateway.")] = None
    otlp: Annotated[MetricsOtlpConfig | None, _doc("Also push as OTLP metrics "
                                                   "(`pip install 'watt[otlp]'`).")] = None


class ManagementApiConfig(_Section):
    """The management API over TCP as well, for tools on other machines."""

    hostname: Annotated[str, _doc("Address to bind (the unix socket is served too).")]
    token: Annotated[str, _doc("Bearer token every TCP request must carry (use a `${VAR}` "
                               "placeholder); at least 16 characters.", min_length=16)]
    port: Annotated[int, _doc("TCP port; 0 picks a free one.", ge=0, le=65535)] = 0
    enabled: Annotated[bool, _doc("Serve the management API at all.")] = True


class ExporterOptions(_Section):
    """Where an exporter sends spans."""

    url: Annotated[Annotated[str, msgspec.Meta(pattern=_URL)] | None, _doc(
                                    "otlp: the traces URL (default "
                                    "http://127.0.0.1:4318/v1/traces; grpc: "
                                    "http://127.0.0.1:4317); zipkin: the spans URL (default "
                                    "http://127.0.0.1:9411/api/v2/spans).")] = None
    headers: Annotated[dict[str, str], _doc("otlp, zipkin: extra HTTP headers (gRPC "
                                            "metadata).")] = {}
    protocol: Annotated[Literal["http/protobuf", "grpc"],
                        _doc("otlp: OTLP over HTTP/protobuf, or gRPC (`watt[otlp-grpc]`).")
                        ] = "http/protobuf"
    path: Annotated[str | None, _doc("file: the JSON-lines file, relative to the config "
                                     "file.")] = None


class ExporterConfig(_Section):
    """One span exporter."""

    type: Annotated[Literal["console", "otlp", "zipkin", "file", "memory"],
                    _doc("console (JSON lines on stdout), otlp (needs `watt[otlp]`), zipkin "
                         "(JSON v2), file, or memory (kept in the runtime, for tests and the "
                         "dashboard).")]
    options: Annotated[ExporterOptions, _doc("Exporter settings.")] = ExporterOptions()


Propagator = Literal["tracecontext", "b3", "b3multi"]


class TelemetryConfig(_Section):
    """OpenTelemetry tracing of every request and mesh call."""

    enabled: Annotated[bool, _doc("Record spans.")] = True
    service_name: Annotated[
        str | None, _doc("Prefix of each application's `service.name` (`<name>-<app id>`); "
                         "default: the application id alone.")
    ] = None
    exporter: Annotated[
        ExporterConfig | list[ExporterConfig], _doc("Where spans go: one exporter or a list.")
    ] = ExporterConfig(type="memory")
    sample_ratio: Annotated[
        float, _doc("Share of new traces recorded (0-1); an incoming trace keeps its own "
                    "sampling decision.", ge=0, le=1)] = 1.0
    propagators: Annotated[
        list[Propagator], _doc("Trace context formats read from requests and written on mesh "
                               "calls: tracecontext (W3C), b3 (single header), b3multi.")
    ] = msgspec.field(default_factory=lambda: ["tracecontext"])
    batch: Annotated[SpanBatchConfig, _doc("Batching of the otlp and zipkin exporters.")] = \
        SpanBatchConfig()

    def exporters(self) -> list[ExporterConfig]:
        return list(self.exporter) if isinstance(self.exporter, list) else [self.exporter]
