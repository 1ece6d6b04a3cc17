"""Trace exporters: OTLP over HTTP/protobuf and gRPC, Zipkin JSON v2 — each tested
against a collector stub in the test that decodes what it receives; batch settings;
exceptions recorded on the spans of both interpreters of a mesh call."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from support import app_config, recording_server, wait_for

from watt.config_telemetry import ExporterConfig, ExporterOptions, TelemetryConfig
from watt.config_transports import SpanBatchConfig
from watt.observability.tracing import SpanSink, ZipkinExporter
from watt.observability.zipkin import zipkin_span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def relay_config(*exporters, **telemetry) -> dict:
    return {"entrypoint": "front",
            "telemetry": {"exporter": [{"type": "memory"}, *exporters], **telemetry},
            "applications": [app_config("front", "raising"),
                             app_config("back", "raising", isolation="process")]}


def relay(rt) -> list[dict]:
    """front (a subinterpreter) calls back (a process) which raises; front raises too."""
    reply = httpx.get(f"{rt.url}/relay?target=back.plt.local",
                      headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert reply.status_code == 500
    wait_for(lambda: len([s for s in rt.spans() if s["traceId"] == TRACE]) == 3)
    return [s for s in rt.spans() if s["traceId"] == TRACE]


def by_role(spans: list[dict], service_key=lambda s: s["resource"]["service.name"]) -> dict:
    return {(service_key(s), s["kind"]): s for s in spans}


def test_exceptions_are_recorded_in_both_interpreters_and_exported_to_zipkin_and_otlp(
        watt_runtime):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    with recording_server("application/json") as (zipkin_base, zipkin), \
            recording_server("application/x-protobuf") as (otlp_base, otlp):
        rt = watt_runtime(relay_config(
            {"type": "zipkin", "options": {"url": f"{zipkin_base}/api/v2/spans",
                                           "headers": {"x-tenant": "t1"}}},
            {"type": "otlp", "options": {"url": f"{otlp_base}/v1/traces"}},
            batch={"scheduleDelay": 20, "maxExportBatchSize": 1}))
        spans = by_role(relay(rt))
        front, client, back = (spans[("front", "SERVER")], spans[("front", "CLIENT")],
                               spans[("back", "SERVER")])
        for span, kind, text in ((front, "RelayedFailure", "back.plt.local answered 500"),
                                 (back, "ValueError", "the back end broke")):
            assert span["status"]["code"] == "ERROR"
            event = next(e for e in span["events"] if e["name"] == "exception")
            assert event["attributes"]["exception.type"] == kind
            assert event["attributes"]["exception.message"] == text
            assert f"{kind}: {text}" in event["attributes"]["exception.stacktrace"]
        assert client["status"]["code"] == "ERROR"  # a 500 answer to a mesh call
        assert back["parentSpanId"] == client["spanId"]
        # Zipkin: JSON v2, one span per request (maxExportBatchSize 1), sent while running
        wait_for(lambda: len([b for *_, b in zipkin if TRACE.encode() in b]) == 3)
        method, path, headers, _ = zipkin[0]
        headers = {k.lower(): v for k, v in headers.items()}
        assert (method, path) == ("POST", "/api/v2/spans")
        assert headers["content-type"] == "application/json" and headers["x-tenant"] == "t1"
        sent = [span for *_, body in zipkin for span in json.loads(body)
                if span["traceId"] == TRACE]
        assert all(len(json.loads(body)) == 1 for *_, body in zipkin)
        z = by_role(sent, lambda s: s["localEndpoint"]["serviceName"])
        z_back = z[("back", "SERVER")]
        assert z_back["id"] == back["spanId"] and z_back["parentId"] == client["spanId"]
        assert z_back["tags"]["error"].startswith("ValueError: the back end broke")
        assert z_back["tags"]["http.response.status_code"] == "500"
        assert z_back["duration"] >= 1 and z_back["timestamp"] == \
            back["startTimeUnixNano"] // 1000
        annotation = json.loads(z_back["annotations"][0]["value"])
        assert annotation["exception"]["exception.type"] == "ValueError"
        assert z[("front", "CLIENT")]["remoteEndpoint"] == {"serviceName": "back"}
        assert z[("front", "SERVER")]["parentId"] == PARENT
        # OTLP over HTTP: protobuf with the exception events
        wait_for(lambda: len(otlp) >= 3)
        exported = {}
        for *_, body in otlp:
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            for resource_spans in message.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        exported[span.span_id.hex()] = span
        otlp_back = exported[back["spanId"]]
        assert otlp_back.trace_id.hex() == TRACE and otlp_back.status.code == 2  # ERROR
        event = otlp_back.events[0]
        assert event.name == "exception"
        assert {a.key: a.value.string_value for a in event.attributes}[
            "exception.type"] == "ValueError"
        text = rt.metrics()
        assert 'watt_spans_dropped_total{exporter="zipkin"} 0.0' in text
        assert 'watt_spans_failed_total{exporter="otlp"} 0.0' in text


def test_otlp_over_grpc_to_a_collector(watt_runtime):
    grpc = pytest.importorskip("grpc", reason="grpcio is not installed: "
                                              "pip install 'watt[otlp-grpc]'")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
                        reason="pip install 'watt[otlp-grpc]'")
    from concurrent import futures

    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 - the gRPC service's name
            received.append((request, dict(context.invocation_metadata())))
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        rt = watt_runtime(relay_config({"type": "otlp", "options": {
            "protocol": "grpc", "url": f"http://127.0.0.1:{port}",
            "headers": {"X-Api-Key": "k"}}}, batch={"scheduleDelay": 20}))
        ids = {s["spanId"] for s in relay(rt)}
        exported = {}

        def arrived() -> bool:
            for request, _ in list(received):
                for resource_spans in request.resource_spans:
                    service = next(a.value.string_value for a in
                                   resource_spans.resource.attributes if a.key == "service.name")
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            exported[span.span_id.hex()] = (service, span)
            return ids <= set(exported)

        wait_for(arrived)
        assert received[0][1]["x-api-key"] == "k"
        services = {service for span_id, (service, _) in exported.items() if span_id in ids}
        assert services == {"front", "back"}
        errors = [span for span_id, (_, span) in exported.items()
                  if span_id in ids and span.events and span.events[0].name == "exception"]
        assert len(errors) == 2
    finally:
        server.stop(None)


def test_a_full_span_queue_drops_and_counts_and_a_dead_collector_counts_failures():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SpanSink(TelemetryConfig(exporter=ExporterConfig(
        type="zipkin", options=ExporterOptions(url=f"http://127.0.0.1:{port}/api/v2/spans")),
        batch=SpanBatchConfig(max_queue_size=2, schedule_delay=60_000, export_timeout=2000)))
    span = json.dumps({"traceId": TRACE, "spanId": PARENT, "parentSpanId": None,
                       "name": "GET /", "kind": "SERVER", "startTimeUnixNano": 10_000,
                       "endTimeUnixNano": 20_000, "attributes": {}, "status": {"code": "UNSET"},
                       "events": []})
    started = time.monotonic()
    sink.receive("svc", "app", (span,) * 5)
    assert time.monotonic() - started < 0.5
    assert sink.export_counts() == [("zipkin", 3, 0)]
    sink.close()  # sends what is queued: the collector is not there
    assert sink.export_counts() == [("zipkin", 3, 2)]


def test_zipkin_mapping():
    span = {"traceId": TRACE, "spanId": PARENT, "parentSpanId": None, "name": "work",
            "kind": "INTERNAL", "startTimeUnixNano": 1_500_000, "endTimeUnixNano": 1_500_400,
            "attributes": {"ok": True, "n": 3}, "status": {"code": "UNSET"}, "events": []}
    out = zipkin_span({"service.name": "svc", "watt.application": "a"}, span)
    assert out == {"traceId": TRACE, "id": PARENT, "name": "work", "timestamp": 1500,
                   "duration": 1, "localEndpoint": {"serviceName": "svc"},
                   "tags": {"ok": "true", "n": "3", "watt.application": "a"}}


def test_the_default_addresses_and_an_exporter_that_is_missing(monkeypatch):
    import sys

    from watt.errors import WattError
    from watt.observability.tracing import OtlpExporter

    zipkin = ZipkinExporter(None, {})
    assert zipkin.url == "http://127.0.0.1:9411/api/v2/spans"
    zipkin.close()
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
                        None)
    with pytest.raises(WattError) as info:
        OtlpExporter(None, {}, "grpc")
    assert info.value.code == "WATT_TELEMETRY_UNAVAILABLE"
    assert "watt[otlp-grpc]" in str(info.value)
