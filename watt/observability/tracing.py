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
import sys
from collections import deque

from loguru import logger

from ..config_telemetry import ExporterConfig, TelemetryConfig
from ..errors import ConfigError


class MemoryExporter:
    """Keeps the latest spans in the runtime (tests, the dashboard)."""

    def __init__(self, size: int = 10_000) -> None:
        self.spans: deque[dict] = deque(maxlen=size)

    def export(self, spans: list[dict]) -> None:
        self.spans.extend(spans)

    def close(self) -> None:
        pass


class ConsoleExporter:
    """One JSON line per span on stdout."""

    def export(self, spans: list[dict]) -> None:
        for span in spans:
            sys.stdout.write(json.dumps({"span": span}, separators=(",", ":")) + "\n")
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

    def export(self, spans: list[dict]) -> None:
        self._file.write("".join(json.dumps(span, separators=(",", ":")) + "\n"
                                 for span in spans))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class OtlpExporter:
    """OTLP over HTTP/protobuf through the OpenTelemetry SDK's batch processor."""

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

    def export(self, spans: list[dict]) -> None:
        for span in spans:
            self._processor.on_end(self._readable(span))

    def _readable(self, span: dict):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        service = span["resource"]["service.name"]
        resource = self._resources.get(service)
        if resource is None:
            resource = self._resources[service] = Resource.create({"service.name": service})
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

    def receive(self, payload: str) -> None:
        try:
            batch = json.loads(payload)
            resource = {"service.name": batch["service"], "watt.application": batch["app"]}
            spans = batch["spans"]
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning(f"dropped a malformed span batch: {exc}")
            return
        for span in spans:
            span["resource"] = resource
        for exporter in self.exporters:
            try:
                exporter.export(spans)
            except Exception as exc:  # noqa: BLE001 - a failing exporter must not stop requests
                logger.warning(f"span exporter {type(exporter).__name__} failed: {exc}")

    def spans(self) -> list[dict]:
        """The spans the memory exporter holds (empty without one)."""
        return list(self.memory.spans) if self.memory is not None else []

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
