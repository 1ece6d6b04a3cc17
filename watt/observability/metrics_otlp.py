"""The runtime's metrics pushed as OTLP over HTTP/protobuf (``metrics.otlp``).

The same families ``/metrics`` serves — every worker's samples labelled with
``applicationId`` and ``workerId`` — are turned into one
``ExportMetricsServiceRequest`` and POSTed to an OpenTelemetry collector's
``/v1/metrics`` every ``interval``: counters as cumulative monotonic sums,
gauges as gauges, histograms with explicit bounds, summaries with their
quantiles.  The protobuf classes come from ``opentelemetry-proto`` (extra
``watt[otlp]``); the POST runs on a thread, so a slow collector never holds
the main loop.
"""

from __future__ import annotations

import asyncio
import time

from loguru import logger

_SKIPPED_SUFFIXES = ("_created",)


def _attributes(labels: dict[str, str]):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    return [KeyValue(key=key, value=AnyValue(string_value=str(value)))
            for key, value in sorted(labels.items())]


def _grouped(samples, drop: str) -> dict[tuple, dict]:
    """Samples of one histogram/summary family grouped by their labels minus ``drop``."""
    groups: dict[tuple, dict] = {}
    for sample in samples:
        labels = {k: v for k, v in sample.labels.items() if k != drop}
        group = groups.setdefault(tuple(sorted(labels.items())),
                                  {"labels": labels, "points": [], "count": 0, "sum": 0.0})
        if drop in sample.labels:
            group["points"].append((sample.labels[drop], sample.value))
        elif sample.name.endswith("_count"):
            group["count"] = int(sample.value)
        elif sample.name.endswith("_sum"):
            group["sum"] = float(sample.value)
    return groups


def encode(families, service_name: str, start_ns: int, now_ns: int | None = None) -> bytes:
    """Prometheus families (``registry.collect()``) as an OTLP metrics request."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    now_ns = now_ns or time.time_ns()
    cumulative = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    metrics = []
    for family in families:
        metric = pb.Metric(name=family.name, description=family.documentation,
                           unit=family.unit or "")
        if family.type == "counter":
            metric.sum.aggregation_temporality = cumulative
            metric.sum.is_monotonic = True
            points = metric.sum.data_points
            for sample in family.samples:
                if not sample.name.endswith(_SKIPPED_SUFFIXES):
                    points.add(attributes=_attributes(sample.labels), as_double=sample.value,
                               start_time_unix_nano=start_ns, time_unix_nano=now_ns)
        elif family.type == "histogram":
            metric.histogram.aggregation_temporality = cumulative
            for group in _grouped(family.samples, "le").values():
                bounds = sorted((float(le), value) for le, value in group["points"])
                finite = [le for le, _ in bounds if le != float("inf")]
                counts, previous = [], 0.0
                for _, running in bounds:
                    counts.append(int(running - previous))
                    previous = running
                metric.histogram.data_points.add(
                    attributes=_attributes(group["labels"]), count=group["count"],
                    sum=group["sum"], explicit_bounds=finite, bucket_counts=counts,
                    start_time_unix_nano=start_ns, time_unix_nano=now_ns)
        elif family.type == "summary":
            for group in _grouped(family.samples, "quantile").values():
                point = metric.summary.data_points.add(
                    attributes=_attributes(group["labels"]), count=group["count"],
                    sum=group["sum"], start_time_unix_nano=start_ns, time_unix_nano=now_ns)
                for quantile, value in group["points"]:
                    point.quantile_values.add(quantile=float(quantile), value=value)
        else:  # gauge, info, stateset, untyped: the value as it is now
            for sample in family.samples:
                if not sample.name.endswith(_SKIPPED_SUFFIXES):
                    metric.gauge.data_points.add(attributes=_attributes(sample.labels),
                                                 as_double=sample.value, time_unix_nano=now_ns)
        metrics.append(metric)
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add(
        resource=Resource(attributes=_attributes({"service.name": service_name})))
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name = "watt"
    scope.metrics.extend(metrics)
    return request.SerializeToString()


def _post(endpoint: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    import urllib.request  # here, not at start: only metrics.otlp posts

    request = urllib.request.Request(endpoint, data=body, method="POST", headers={
        "Content-Type": "application/x-protobuf", **headers})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
        response.read()


async def otlp_push_loop(collector, endpoint: str, headers: dict[str, str], interval: float,
                         service_name: str = "watt", timeout: float = 10.0) -> None:
    """POST the metrics to ``endpoint`` every ``interval`` seconds until cancelled."""
    start_ns = time.time_ns()
    while True:
        await asyncio.sleep(interval)
        registry = collector.registry(await collector.gather())
        try:
            body = encode(registry.collect(), service_name, start_ns)
            await asyncio.to_thread(_post, endpoint, body, headers, timeout)
        except Exception as exc:  # noqa: BLE001 - the collector's trouble is not ours to crash on
            logger.warning(f"pushing OTLP metrics to {endpoint} failed: {exc}")


def check_available() -> None:
    """Fail at start, with the extra to install, when opentelemetry-proto is missing."""
    try:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2  # noqa: F401
    except ImportError as exc:
        from ..errors import ConfigError

        raise ConfigError("metrics.otlp needs opentelemetry-proto: pip install 'watt[otlp]' "
                          f"({exc})", code="WATT_TELEMETRY_UNAVAILABLE",
                          key="metrics.otlp") from None
