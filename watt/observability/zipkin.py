"""Spans as Zipkin's JSON v2 (``POST /api/v2/spans``), mapped here by hand.

The OpenTelemetry Zipkin exporter package would do the same from SDK spans,
but our spans are already OTLP-shaped dicts, and the mapping is short; it
follows that exporter's conventions (attributes and resource as string
tags, ``otel.status_code``/``error`` for an error status, each event as an
annotation whose value is ``{"<name>": {attributes}}``).
"""

from __future__ import annotations

import json

_KINDS = frozenset({"SERVER", "CLIENT", "PRODUCER", "CONSUMER"})


def _tag(value) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def zipkin_span(resource: dict, span: dict) -> dict:
    """One span (OTLP-shaped dict, as workers record them) in Zipkin v2 form (pure)."""
    start_us = span["startTimeUnixNano"] // 1000
    out: dict = {
        "traceId": span["traceId"], "id": span["spanId"], "name": span["name"],
        "timestamp": start_us,
        "duration": max(1, span["endTimeUnixNano"] // 1000 - start_us),
        "localEndpoint": {"serviceName": resource.get("service.name", "unknown")},
    }
    if span.get("parentSpanId"):
        out["parentId"] = span["parentSpanId"]
    if span.get("kind") in _KINDS:
        out["kind"] = span["kind"]
    attributes = span.get("attributes") or {}
    target = attributes.get("watt.mesh.target")
    if span.get("kind") == "CLIENT" and target:
        out["remoteEndpoint"] = {"serviceName": str(target)}
    tags = {key: _tag(value) for key, value in attributes.items()}
    tags.update((key, _tag(value)) for key, value in resource.items() if key != "service.name")
    status = span.get("status") or {}
    if status.get("code") == "ERROR":
        tags["otel.status_code"] = "ERROR"
        tags["error"] = status.get("message") or "true"
    if tags:
        out["tags"] = tags
    events = span.get("events") or ()
    if events:
        out["annotations"] = [{
            "timestamp": event["timeUnixNano"] // 1000,
            "value": json.dumps({event["name"]: event.get("attributes") or {}},
                                separators=(",", ":")),
        } for event in events]
    return out


def zipkin_body(items: list[tuple[str, str]]) -> bytes:
    """The request body for a batch of ``(resource JSON, span JSON)`` texts."""
    resources: dict[str, dict] = {}
    spans = []
    for resource, span in items:
        attrs = resources.get(resource)
        if attrs is None:
            attrs = resources[resource] = json.loads(resource)
        spans.append(zipkin_span(attrs, json.loads(span)))
    return json.dumps(spans, separators=(",", ":")).encode()
