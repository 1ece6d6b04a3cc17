"""Spans from every worker, exported from the main process.

Workers record the spans (``watt/worker/tracing.py``: a SERVER span per
request they serve, a CLIENT span per mesh call, linked by the trace context
headers) and send them in SPANS frames; :class:`SpanSink` hands them to the
configured exporters.  ``console``, ``file`` and ``memory`` need nothing
more; ``otlp`` converts them to OpenTelemetry SDK spans and exports them with
the SDK's OTLP exporter over HTTP/protobuf (``pip install 'watt[otlp]'``) or
gRPC (``watt[otlp-grpc]``), ``zipkin`` posts Zipkin JSON v2; those network
exporters batch on a thread of their own (a bounded queue that drops and
counts when full), so exporting never blocks a request.

A span here is a dict in the shape of OTLP's JSON encoding: ``traceId``,
``spanId``, ``parentSpanId``, ``name``, ``kind``, ``startTimeUnixNano``,
``endTimeUnixNano``, ``attributes``, ``status``, ``events`` and ``resource``
(``service.name``).
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque

from loguru import logger

from ..config_telemetry import ExporterConfig, TelemetryConfig
from ..config_transports import SpanBatchConfig
from ..errors import ConfigError
from .batch import BatchWorker, loop_reporter
from .zipkin import zipkin_body


def _with_resource(span: str, resource: str) -> str:
    """A span's JSON text with its ``resource`` added, without decoding it."""
    return span[:-1] + ',"resource":' + resource + "}"


class MemoryExporter:
    """Keeps the latest spans in the runtime (tests, the dashboard), as text;
    decoded only when read."""

    def __init__(self, size: int = 10_000) -> None:
        self._spans: deque[tuple[str, str]] = deque(maxlen=size)

    def export(self, resource: str, spans: tuple[str, ...]) -> None:
        self._spans.extend((resource, span) for span in spans)

    @property
    def spans(self) -> list[dict]:
        return [json.loads(_with_resource(span, resource)) for resource, span in
                list(self._spans)]

    def close(self) -> None:
        pass


class ConsoleExporter:
    """One ``{"span": ...}`` JSON line per span on stdout."""

    def export(self, resource: str, spans: tuple[str, ...]) -> None:
        sys.stdout.write("".join('{"span":' + _with_resource(span, resource) + "}\n"
                                 for span in spans))
        sys.stdout.flush()

    def close(self) -> None:
        pass


class FileExporter:
    """One JSON line per span, appended to a file."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        except OSError as exc:
            raise ConfigError(f"`telemetry.exporter.options.path`: cannot open {path}: {exc}",
                              code="WATT_CONFIG_INVALID",
                              key="telemetry.exporter.options.path") from exc

    def export(self, resource: str, spans: tuple[str, ...]) -> None:
        self._file.write("".join(_with_resource(span, resource) + "\n" for span in spans))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _Batched:
    """A network exporter: the main loop queues each span's text (O(1), never
    waiting); a :class:`BatchWorker` thread decodes, converts and sends batches
    (``telemetry.batch``); a full queue drops spans and counts them."""

    def __init__(self, name: str, batch: SpanBatchConfig) -> None:
        self.name = name
        self.timeout = batch.export_timeout / 1000
        self.worker = BatchWorker(f"spans-{name}", self.send,
                                  batch_size=batch.max_export_batch_size,
                                  delay=batch.schedule_delay / 1000,
                                  max_queue=batch.max_queue_size,
                                  on_error=loop_reporter(f"span exporter {name} failed"))

    def export(self, resource: str, spans: tuple[str, ...]) -> None:
        offer = self.worker.offer
        for span in spans:
            offer((resource, span))

    def send(self, batch: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.worker.close(self.timeout)


#: Seconds a stopping runtime lets the OTLP exporter retry a collector that is down.
CLOSE_GRACE = 2.0


def _quiet_sdk_logging() -> None:
    """The OpenTelemetry SDK reports each retry through stdlib ``logging``, which with
    no handler prints raw, non-JSON lines on stderr.  Its records go to the runtime's
    log as debug lines instead: failures already reach the log, counted and rate
    limited, through the exporter's :class:`BatchWorker`."""
    import logging

    class SdkToLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logger.debug(f"{record.name}: {record.getMessage()}")

    sdk = logging.getLogger("opentelemetry")
    if not any(type(h).__name__ == "SdkToLog" for h in sdk.handlers):
        sdk.addHandler(SdkToLog())
        sdk.propagate = False


class OtlpExporter(_Batched):
    """OTLP over HTTP/protobuf or gRPC, through the OpenTelemetry SDK's span exporters."""

    def __init__(self, url: str | None, headers: dict[str, str], protocol: str = "http/protobuf",
                 batch: SpanBatchConfig | None = None) -> None:
        batch = batch or SpanBatchConfig()
        extra = "otlp" if protocol == "http/protobuf" else "otlp-grpc"
        try:
            from opentelemetry.sdk.trace.export import SpanExportResult
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
        except ImportError as exc:
            raise ConfigError(
                f"the otlp span exporter ({protocol}) needs the OpenTelemetry SDK and OTLP "
                f"exporter: pip install 'watt[{extra}]' ({exc})",
                code="WATT_TELEMETRY_UNAVAILABLE", key="telemetry.exporter") from None
        self._ok = SpanExportResult.SUCCESS
        _quiet_sdk_logging()
        if protocol == "grpc":
            target = url or "http://127.0.0.1:4317"
            self._exporter = OTLPSpanExporter(
                endpoint=target, insecure=target.startswith("http://"),
                headers={k.lower(): v for k, v in headers.items()} or None,
                timeout=batch.export_timeout / 1000)
        else:
            self._exporter = OTLPSpanExporter(
                endpoint=url or "http://127.0.0.1:4318/v1/traces", headers=headers or None,
                timeout=batch.export_timeout / 1000)
        self._resources: dict[str, object] = {}
        super().__init__("otlp" if protocol == "http/protobuf" else "otlp-grpc", batch)

    def send(self, batch: list[tuple[str, str]]) -> None:
        spans = [self._readable(json.loads(resource), json.loads(span))
                 for resource, span in batch]
        if self._exporter.export(spans) != self._ok:
            raise OSError(f"the collector did not take {len(spans)} spans")

    def _readable(self, resource_attributes: dict, span: dict):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        service = resource_attributes["service.name"]
        resource = self._resources.get(service)
        if resource is None:
            resource = self._resources[service] = Resource.create(resource_attributes)
        trace_id = int(span["traceId"], 16)
        context = SpanContext(trace_id, int(span["spanId"], 16), is_remote=False,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
        parent = (SpanContext(trace_id, int(span["parentSpanId"], 16), is_remote=True,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
                  if span.get("parentSpanId") else None)
        status = span.get("status") or {}
        return ReadableSpan(
            name=span["name"], context=context, parent=parent, resource=resource,
            attributes=span.get("attributes") or {},
            events=[Event(e["name"], e.get("attributes"), e["timeUnixNano"])
                    for e in span.get("events") or ()],
            kind=getattr(SpanKind, span.get("kind", "INTERNAL")),
            status=Status(StatusCode.ERROR, status.get("message")) if status.get("code") ==
            "ERROR" else Status(StatusCode.UNSET),
            start_time=span["startTimeUnixNano"], end_time=span["endTimeUnixNano"])

    def close(self) -> None:
        """Export what is still queued; a collector that is down is retried for
        :data:`CLOSE_GRACE` seconds, not the whole ``exportTimeout`` (the SDK's
        back-off held every stop for 30 s), then the SDK's retries are ended."""
        self.worker.close(min(self.timeout, CLOSE_GRACE))
        self._exporter.shutdown()  # wakes the SDK's back-off wait: no more retries
        self.worker.close(self.timeout)


class ZipkinExporter(_Batched):
    """Zipkin JSON v2 over HTTP (``watt/observability/zipkin.py`` maps the spans)."""

    def __init__(self, url: str | None, headers: dict[str, str],
                 batch: SpanBatchConfig | None = None) -> None:
        self.url = url or "http://127.0.0.1:9411/api/v2/spans"
        self.headers = {"content-type": "application/json", **headers}
        super().__init__("zipkin", batch or SpanBatchConfig())

    def send(self, batch: list[tuple[str, str]]) -> None:
        import urllib.request  # here, not at start: only a zipkin exporter sends

        request = urllib.request.Request(self.url, data=zipkin_body(batch),
                                         headers=self.headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as reply:
            reply.read()


def make_exporter(config: ExporterConfig, batch: SpanBatchConfig | None = None):
    if config.type == "memory":
        return MemoryExporter()
    if config.type == "console":
        return ConsoleExporter()
    if config.type == "file":
        if not config.options.path:
            raise ConfigError("`telemetry.exporter.options.path` is required for the file "
                              "exporter", code="WATT_CONFIG_INVALID",
                              key="telemetry.exporter.options.path")
        return FileExporter(config.options.path)
    if config.type == "zipkin":
        return ZipkinExporter(config.options.url, config.options.headers, batch)
    return OtlpExporter(config.options.url, config.options.headers, config.options.protocol,
                        batch)


class SpanSink:
    """Receives SPANS frames and passes the spans to every exporter."""

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.exporters = [make_exporter(exporter, config.batch)
                          for exporter in config.exporters()]
        self.memory = next((e for e in self.exporters if isinstance(e, MemoryExporter)), None)
        self._resources: dict[tuple[str, str], str] = {}

    def receive(self, service: str, app: str, spans: tuple[str, ...]) -> None:
        """A worker's SPANS frame: each span as JSON text, passed on undecoded."""
        resource = self._resources.get((service, app))
        if resource is None:
            resource = self._resources[(service, app)] = json.dumps(
                {"service.name": service, "watt.application": app}, separators=(",", ":"))
        for exporter in self.exporters:
            try:
                exporter.export(resource, spans)
            except Exception as exc:  # noqa: BLE001 - a failing exporter must not stop requests
                logger.warning(f"span exporter {type(exporter).__name__} failed: {exc}")

    def export_counts(self) -> list[tuple[str, int, int]]:
        """``(exporter, dropped, failed)`` of each network exporter, for the metrics."""
        return [(e.name, e.worker.dropped, e.worker.failed) for e in self.exporters
                if isinstance(e, _Batched)]

    def spans(self) -> list[dict]:
        """The spans the memory exporter holds (empty without one)."""
        return self.memory.spans if self.memory is not None else []

    def close(self) -> None:
        for exporter in self.exporters:
            try:
                exporter.close()
            except Exception as exc:  # noqa: BLE001
                logger.warning(f"closing span exporter {type(exporter).__name__} failed: {exc}")


def worker_tracing(config: TelemetryConfig | None, app_id: str) -> dict | None:
    """The ``tracing`` part of a worker's spec: None when tracing is off."""
    if config is None or not config.enabled:
        return None
    service = f"{config.service_name}-{app_id}" if config.service_name else app_id
    return {"service": service, "ratio": config.sample_ratio,
            "propagators": list(config.propagators)}
