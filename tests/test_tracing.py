"""Tracing: a span per request and per mesh-call end, linked across interpreters and
processes; W3C and B3 in and out; sampling; exporters (memory, file, console, OTLP)."""

from __future__ import annotations

import json

import httpx
import pytest
from support import app_config, recording_server, wait_for

from watt.worker.tracing import inject, parse_b3, parse_b3multi, parse_traceparent

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def two_apps(exporter: dict | list | None = None, back_isolation: str = "process", **telemetry):
    telemetry.setdefault("exporter", exporter or {"type": "memory"})
    return {"entrypoint": "front", "telemetry": telemetry, "applications": [
        app_config("front"), app_config("back", isolation=back_isolation)]}


def spans_of(rt, count: int) -> list[dict]:
    wait_for(lambda: len(rt.spans()) >= count)
    return rt.spans()


@pytest.mark.parametrize("back_isolation", ["subinterpreter", "process"])
def test_a_traceparent_links_the_entry_and_both_ends_of_a_mesh_call(watt_runtime,
                                                                    back_isolation):
    rt = watt_runtime(two_apps(back_isolation=back_isolation, serviceName="shop"))
    reply = httpx.get(f"{rt.url}/mesh?target=back.plt.local",
                      headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert reply.status_code == 200
    spans = spans_of(rt, 3)
    assert len(spans) == 3
    assert {s["traceId"] for s in spans} == {TRACE}
    entry = next(s for s in spans if s["kind"] == "SERVER" and s["resource"]["service.name"]
                 == "shop-front")
    client = next(s for s in spans if s["kind"] == "CLIENT")
    target = next(s for s in spans if s["resource"]["service.name"] == "shop-back")
    assert entry["parentSpanId"] == PARENT
    assert client["parentSpanId"] == entry["spanId"]
    assert target["parentSpanId"] == client["spanId"] and target["kind"] == "SERVER"
    assert entry["name"] == "GET /mesh" and target["name"] == "GET /whoami"
    assert entry["attributes"]["http.request.method"] == "GET"
    assert entry["attributes"]["url.path"] == "/mesh"
    assert entry["attributes"]["http.response.status_code"] == 200
    assert client["attributes"]["watt.mesh.target"] == "back"
    assert client["attributes"]["url.full"] == "http://back.plt.local/whoami"
    for span in spans:
        assert span["startTimeUnixNano"] <= span["endTimeUnixNano"]
    assert entry["startTimeUnixNano"] <= client["startTimeUnixNano"] <= \
        target["startTimeUnixNano"] <= target["endTimeUnixNano"] <= entry["endTimeUnixNano"]
    # The trace id is in the log lines of the same request, in both applications.
    wait_for(lambda: len([r for r in rt.logs() if r.get("status")]) >= 2)
    assert {r["app"] for r in rt.logs(traceId=TRACE) if r.get("status")} == {"front", "back"}


def test_a_new_trace_starts_without_incoming_context(watt_runtime):
    rt = watt_runtime(two_apps())
    assert httpx.get(f"{rt.url}/mesh?target=back.plt.local").status_code == 200
    spans = spans_of(rt, 3)
    assert len({s["traceId"] for s in spans}) == 1
    root = [s for s in spans if s["parentSpanId"] is None]
    assert len(root) == 1 and root[0]["resource"]["service.name"] == "front"


@pytest.mark.parametrize("headers", [
    {"b3": f"{TRACE}-{PARENT}-1"},
    {"x-b3-traceid": TRACE, "x-b3-spanid": PARENT, "x-b3-sampled": "1"},
])
def test_b3_input_is_continued_and_b3_goes_out(watt_runtime, headers):
    rt = watt_runtime(two_apps(propagators=["tracecontext", "b3", "b3multi"]))
    reply = httpx.get(f"{rt.url}/mesh-headers?target=back.plt.local", headers=headers)
    assert reply.status_code == 200
    spans = spans_of(rt, 3)
    assert {s["traceId"] for s in spans} == {TRACE}
    entry = next(s for s in spans if s["kind"] == "SERVER" and s["parentSpanId"] == PARENT)
    client = next(s for s in spans if s["kind"] == "CLIENT")
    assert client["parentSpanId"] == entry["spanId"]
    theirs = reply.json()["theirs"]  # what the target application received
    assert theirs["traceparent"] == f"00-{TRACE}-{client['spanId']}-01"
    assert theirs["b3"] == f"{TRACE}-{client['spanId']}-1"
    assert theirs["x-b3-spanid"] == client["spanId"]


def test_a_sampling_ratio_of_zero_records_nothing_but_keeps_ids(watt_runtime):
    rt = watt_runtime(two_apps(sampleRatio=0))
    reply = httpx.get(f"{rt.url}/mesh-headers?target=back.plt.local")
    theirs = reply.json()["theirs"]
    assert theirs["traceparent"].endswith("-00")  # not sampled, said downstream
    trace_id = theirs["traceparent"].split("-")[1]
    wait_for(lambda: len([r for r in rt.logs() if r.get("status")]) >= 2)
    assert {r["app"] for r in rt.logs(traceId=trace_id) if r.get("status")} == {"front", "back"}
    assert rt.spans() == []


def test_an_exception_is_recorded_on_the_span(watt_runtime):
    rt = watt_runtime(two_apps())
    assert httpx.get(f"{rt.url}/boom").status_code == 500
    span = spans_of(rt, 1)[0]
    assert span["status"]["code"] == "ERROR"
    assert span["attributes"]["http.response.status_code"] == 500
    event = span["events"][0]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "RuntimeError"
    assert "boom" in event["attributes"]["exception.stacktrace"]


def test_a_mesh_call_without_a_response_records_an_exception_on_its_client_span(
        watt_runtime):
    rt = watt_runtime({"entrypoint": "front", "telemetry": {"exporter": {"type": "memory"}},
                       "applications": [app_config("front")]})
    calls = {"WATT_MESH_TIMEOUT": {"target": "front.plt.local", "path": "/slow?delay=1",
                                   "timeout": "0.1"},
             "WATT_MESH_UNKNOWN_APP": {"target": "nope.plt.local"}}
    for code, params in calls.items():
        assert httpx.get(f"{rt.url}/fetch", params=params).json()["code"] == code

    def failed_clients():
        return [s for s in rt.spans() if s["kind"] == "CLIENT" and s["status"]["code"] ==
                "ERROR"]

    wait_for(lambda: len(failed_clients()) == 2)
    for span, code in zip(sorted(failed_clients(), key=lambda s: s["startTimeUnixNano"]),
                          calls, strict=True):
        assert "http.response.status_code" not in span["attributes"]
        [event] = span["events"]
        assert event["name"] == "exception" and event["timeUnixNano"] <= \
            span["endTimeUnixNano"]
        attributes = event["attributes"]
        assert attributes["exception.type"] == "MeshCallError"
        assert attributes["exception.message"].startswith(f"{code}: ")
        assert span["status"]["message"] in attributes["exception.message"]
        assert "Traceback" in attributes["exception.stacktrace"] and \
            "mesh_client.py" in attributes["exception.stacktrace"]


def test_file_and_console_exporters(watt_runtime, tmp_path, capfd):
    path = tmp_path / "spans.jsonl"
    rt = watt_runtime(two_apps([{"type": "file", "options": {"path": str(path)}},
                                {"type": "console"}, {"type": "memory"}]))
    assert httpx.get(f"{rt.url}/mesh?target=back.plt.local").status_code == 200
    spans_of(rt, 3)
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) == 3)
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert {s["spanId"] for s in written} == {s["spanId"] for s in rt.spans()}
    console = [json.loads(line)["span"] for line in capfd.readouterr().out.splitlines()
               if line.startswith('{"span":')]
    assert {s["spanId"] for s in console} == {s["spanId"] for s in written}


def test_the_otlp_exporter_sends_protobuf_to_a_collector(watt_runtime):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    with recording_server("application/x-protobuf") as (base, received):
        rt = watt_runtime(two_apps({"type": "otlp", "options": {"url": f"{base}/v1/traces"}}))
        reply = httpx.get(f"{rt.url}/mesh?target=back.plt.local",
                          headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
        assert reply.status_code == 200
        rt.stop()  # shutting the exporter down flushes its batch
    assert received, "no OTLP export arrived"
    method, path, headers, _ = received[0]
    assert (method, path) == ("POST", "/v1/traces")
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/x-protobuf"
    exported = {}
    for *_, body in received:
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource_spans in message.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    exported[span.span_id.hex()] = (service, span.trace_id.hex(),
                                                    span.parent_span_id.hex(), span.kind)
    assert len(exported) == 3
    assert {trace for _, trace, _, _ in exported.values()} == {TRACE}
    assert {service for service, *_ in exported.values()} == {"front", "back"}
    assert PARENT in {parent for _, _, parent, _ in exported.values()}


def test_otlp_without_the_sdk_is_a_clear_error(monkeypatch):
    import sys

    from watt.errors import WattError
    from watt.observability.tracing import OtlpExporter

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)
    with pytest.raises(WattError) as info:
        OtlpExporter(None, {})
    assert info.value.code == "WATT_TELEMETRY_UNAVAILABLE"
    assert "watt[otlp]" in str(info.value)


# -- pure parts ---------------------------------------------------------------------------
def test_traceparent_parsing_accepts_valid_and_rejects_invalid():
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == (TRACE, PARENT, True)
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-00") == (TRACE, PARENT, False)
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-01-future") == (TRACE, PARENT, True)
    for bad in (f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01", "garbage",
                f"ff-{TRACE}-{PARENT}-01", f"00-{TRACE}-{PARENT}-01-extra",
                f"00-{TRACE[:-1]}x-{PARENT}-01"):
        assert parse_traceparent(bad) is None, bad


def test_b3_parsing_single_and_multi():
    assert parse_b3(f"{TRACE}-{PARENT}") == (TRACE, PARENT, True)
    assert parse_b3(f"{TRACE}-{PARENT}-0-{PARENT}") == (TRACE, PARENT, False)
    assert parse_b3(f"{TRACE[16:]}-{PARENT}-d") == ("0" * 16 + TRACE[16:], PARENT, True)
    assert parse_b3("1") is None and parse_b3("x-y") is None
    assert parse_b3multi({b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": PARENT.encode(),
                          b"x-b3-sampled": b"0"}) == (TRACE, PARENT, False)
    assert parse_b3multi({b"x-b3-traceid": TRACE.encode(), b"x-b3-spanid": PARENT.encode(),
                          b"x-b3-flags": b"1", b"x-b3-sampled": b"0"}) == (TRACE, PARENT, True)
    assert parse_b3multi({b"x-b3-traceid": TRACE.encode()}) is None


def test_inject_writes_each_configured_format():
    headers = dict(inject(TRACE, PARENT, True, b"k=v", ["tracecontext", "b3", "b3multi"]))
    assert headers[b"traceparent"] == f"00-{TRACE}-{PARENT}-01".encode()
    assert headers[b"tracestate"] == b"k=v"
    assert headers[b"b3"] == f"{TRACE}-{PARENT}-1".encode()
    assert headers[b"x-b3-sampled"] == b"1" and headers[b"x-b3-spanid"] == PARENT.encode()
