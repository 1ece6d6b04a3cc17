"""Spans from every worker, exported from the main process.

Workers record the spans (``watt/worker/tracing.py``: a SERVER span per
request they serve, a CLIENT span per mesh call, linked by the trace context
headers) and send them in SPANS frames; :class:`SpanSink` hands them to the
configured exporters.  ``console``, ``file`` and ``memory`` need nothing
more; ``otlp`` converts them to OpenTelemetry SDK spans and exports them with
the SDK's batch processor over OTLP/HTTP (``pip install 'watt[otlp]'``), on
its own thread, so exporting never blocks a request.

A span here is a dict in the shape of OTLP's JSON encoding: ``traceId``,
``spanId``, ``parentSpanId``, ``name``, ``kind``, ``startTimeUnixNano``,
``endTimeUnixNano``, ``attributes``, ``status``, ``events`` and ``resource``
(``service.name``).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from collections import deque

from loguru import logger

from ..config_telemetry import ExporterConfig, TelemetryConfig
from ..errors import ConfigError


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


class OtlpExporter:
    """OTLP over HTTP/protobuf through the OpenTelemetry SDK's batch processor.

    Spans are decoded and converted on a thread of their own, so the main loop
    only queues their text."""

    def __init__(self, url: str | None, headers: dict[str, str]) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise ConfigError(
                "the otlp span exporter needs the OpenTelemetry SDK and OTLP exporter: "
                f"pip install 'watt[otlp]' ({exc})", code="WATT_TELEMETRY_UNAVAILABLE",
                key="telemetry.exporter") from None
        self._processor = BatchSpanProcessor(OTLPSpanExporter(
            endpoint=url or "http://127.0.0.1:4318/v1/traces", headers=headers or None))
        self._resources: dict[str, object] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._convert, name="watt-otlp", daemon=True)
        self._thread.start()

    def export(self, resource: str, spans: tuple[str, ...]) -> None:
        self._queue.put((resource, spans))

    def _convert(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            resource, spans = item
            for span in spans:
                try:
                    self._processor.on_end(self._readable(json.loads(resource),
                                                          json.loads(span)))
                except Exception as exc:  # noqa: BLE001 - one bad span must not stop the rest
                    logger.warning(f"could not export a span over OTLP: {exc}")

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
        self._queue.put(None)
        self._thread.join(10)
        self._processor.shutdown()  # exports what is still queued


def make_exporter(config: ExporterConfig):
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
    return OtlpExporter(config.options.url, config.options.headers)


class SpanSink:
    """Receives SPANS frames and passes the spans to every exporter."""

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.exporters = [make_exporter(exporter) for exporter in config.exporters()]
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
