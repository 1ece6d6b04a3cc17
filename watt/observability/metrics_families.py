"""The Prometheus families of ``/metrics``, built from worker snapshots (pure).

Split from ``metrics.py`` so that ``prometheus_client`` (and its exposition
module, which pulls in ``http.server``, ``urllib.request`` and ``email``) is
imported when metrics are first built -- a scrape, a push, ``watt metrics`` --
not by every ``watt start``: it was about a tenth of importing the runtime.
"""

from __future__ import annotations

from loguru import logger
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ..worker.metrics import BUCKETS, QUANTILES

_WORKER_LABELS = ["applicationId", "workerId"]
#: Families a worker's default prometheus_client collectors export: the runtime
#: reports its process once, itself.
_SKIPPED_CUSTOM = ("process_", "python_gc_", "python_info")




def registry(snapshots: list[dict], pools: list[dict], sources: list, labels: dict[str, str],
             ) -> CollectorRegistry:
    """The runtime process's own collectors, then every worker's families and the
    runtime's ``sources``, all with the ``metrics.labels``."""
    inner = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=inner)
    PlatformCollector(registry=inner)
    GCCollector(registry=inner)
    outer = CollectorRegistry(auto_describe=False)
    outer.register(_Families(lambda: list(inner.collect()) + families(snapshots, pools)
                             + [f for source in sources for f in source()], labels))
    return outer


class _Families:
    def __init__(self, produce, labels: dict[str, str]) -> None:
        self._produce = produce
        self._labels = labels

    def collect(self):
        for family in self._produce():
            if self._labels:
                family = _relabelled(family, self._labels)
            yield family


def _relabelled(family: Metric, labels: dict[str, str]) -> Metric:
    copy = Metric(family.name, family.documentation, family.type, family.unit)
    copy.samples = [sample._replace(labels={**labels, **sample.labels})
                    for sample in family.samples]
    return copy


def families(snapshots: list[dict], pools: list[dict]) -> list[Metric]:
    """The Prometheus families for worker snapshots (pure: tested without workers)."""
    duration = HistogramMetricFamily(
        "http_request_duration_seconds", "Time from request to the end of the response, "
        "per application and worker.", labels=_WORKER_LABELS + ["method", "status_code"])
    summary = Metric("http_request_summary_seconds", "Quantiles of the request duration over "
                     "the last 1024 requests of each worker.", "summary")
    requests = CounterMetricFamily("http_requests", "Requests answered.",
                                   labels=_WORKER_LABELS + ["method", "status_code"])
    in_flight = GaugeMetricFamily("http_requests_in_flight", "Requests being answered.",
                                  labels=_WORKER_LABELS)
    elu = GaugeMetricFamily("watt_worker_event_loop_utilization", "Share of time the worker's "
                            "event loop was busy since the previous scrape (0-1).",
                            labels=_WORKER_LABELS)
    cpu = CounterMetricFamily("watt_worker_cpu_seconds", "CPU time: a process worker's whole "
                              "process; a subinterpreter's event-loop thread.",
                              labels=_WORKER_LABELS)
    memory = GaugeMetricFamily("watt_worker_resident_memory_bytes", "Resident memory of a "
                               "process worker (a subinterpreter shares the runtime's, see "
                               "process_resident_memory_bytes).", labels=_WORKER_LABELS)
    gc_runs = CounterMetricFamily("watt_worker_gc_collections", "Garbage collections of the "
                                  "worker's interpreter.", labels=_WORKER_LABELS + ["generation"])
    gc_objects = CounterMetricFamily("watt_worker_gc_objects_collected", "Objects the "
                                     "worker's garbage collector freed.",
                                     labels=_WORKER_LABELS + ["generation"])
    mesh_calls = CounterMetricFamily("watt_mesh_requests", "Mesh calls made by an application "
                                     "(applicationId) to another (target); status_code 0: no "
                                     "response (timeout, no worker).",
                                     labels=_WORKER_LABELS + ["target", "method", "status_code"])
    mesh_duration = HistogramMetricFamily(
        "watt_mesh_request_duration_seconds", "Time from a mesh call to its response start.",
        labels=_WORKER_LABELS + ["target", "method", "status_code"])
    client_duration = HistogramMetricFamily(
        "http_client_request_duration_seconds", "Time from an outgoing HTTP request (mesh or "
        "external, any client) to its response start, by target host; status_code 0: no "
        "response.", labels=_WORKER_LABELS + ["host", "method", "status_code"])
    custom: dict[str, Metric] = {}
    for snap in snapshots:
        data, ids = snap["data"], [snap["app"], str(snap["worker"])]
        for method, status, count, total, buckets in data.get("requests", ()):
            labels = ids + [method, str(status)]
            duration.add_metric(labels, _cumulative(buckets), total)
            requests.add_metric(labels, count)
        quantiles = data.get("quantiles") or []
        count = sum(entry[2] for entry in data.get("requests", ()))
        total = sum(entry[3] for entry in data.get("requests", ()))
        worker_labels = {"applicationId": ids[0], "workerId": ids[1]}
        for q, value in zip(QUANTILES, quantiles, strict=False):
            summary.add_sample("http_request_summary_seconds",
                               {**worker_labels, "quantile": str(q)}, value)
        summary.add_sample("http_request_summary_seconds_count", worker_labels, count)
        summary.add_sample("http_request_summary_seconds_sum", worker_labels, total)
        in_flight.add_metric(ids, data.get("inFlight", 0))
        if data.get("elu") is not None:
            elu.add_metric(ids, data["elu"])
        cpu.add_metric(ids, data.get("cpu", 0.0))
        if data.get("memory") is not None:
            memory.add_metric(ids, data["memory"])
        for generation, (runs, collected, _uncollectable) in enumerate(data.get("gc", ())):
            gc_runs.add_metric(ids + [str(generation)], runs)
            gc_objects.add_metric(ids + [str(generation)], collected)
        for target, method, status, count, total, buckets in data.get("mesh", ()):
            labels = ids + [target, method, str(status)]
            mesh_calls.add_metric(labels, count)
            mesh_duration.add_metric(labels, _cumulative(buckets), total)
        for host, method, status, _count, total, buckets in data.get("client", ()):
            client_duration.add_metric(ids + [host, method, str(status)], _cumulative(buckets),
                                       total)
        if data.get("custom"):
            _merge_custom(custom, data["custom"], worker_labels, snap["app"])
    restarts = CounterMetricFamily("watt_worker_restarts", "Workers of an application "
                                   "restarted or replaced.", labels=["applicationId"])
    workers = GaugeMetricFamily("watt_workers", "Workers of an application by status.",
                                labels=["applicationId", "status"])
    for pool in pools:
        restarts.add_metric([pool["id"]], pool["restarts"])
        statuses: dict[str, int] = {}
        for worker in pool["workers"]:
            statuses[worker["status"]] = statuses.get(worker["status"], 0) + 1
        for status, number in statuses.items():
            workers.add_metric([pool["id"], status], number)
    return [duration, summary, requests, in_flight, elu, cpu, memory, gc_runs, gc_objects,
            mesh_calls, mesh_duration, client_duration, restarts, workers, *custom.values()]


def connection_families(engine: str, connections: int) -> list[Metric]:
    """``watt_entrypoint_active_connections`` (pure)."""
    gauge = GaugeMetricFamily("watt_entrypoint_active_connections", "Client connections open "
                              "at the entrypoint (granian, hypercorn: requests and WebSockets "
                              "in progress).", labels=["engine"])
    gauge.add_metric([engine], connections)
    return [gauge]


def transport_families(counts: list[tuple[str, str, int, int]]) -> list[Metric]:
    """Log lines each transport dropped (queue full) or failed to send (pure)."""
    dropped = CounterMetricFamily("watt_log_lines_dropped", "Log lines a transport dropped "
                                  "because its queue was full.", labels=["transport", "type"])
    failed = CounterMetricFamily("watt_log_lines_failed", "Log lines a transport could not "
                                 "send (the destination refused or was unreachable).",
                                 labels=["transport", "type"])
    for name, kind, lost, refused in counts:
        dropped.add_metric([name, kind], lost)
        failed.add_metric([name, kind], refused)
    return [dropped, failed] if counts else []


def span_families(sink) -> list[Metric]:
    """Spans each network exporter dropped (queue full) or failed to send (pure: reads
    ``sink.export_counts()`` of a tracing SpanSink, or nothing without one)."""
    counts = sink.export_counts() if sink is not None else []
    if not counts:
        return []
    dropped = CounterMetricFamily("watt_spans_dropped", "Spans an exporter dropped because "
                                  "its queue was full.", labels=["exporter"])
    failed = CounterMetricFamily("watt_spans_failed", "Spans an exporter could not send.",
                                 labels=["exporter"])
    for name, lost, refused in counts:
        dropped.add_metric([name], lost)
        failed.add_metric([name], refused)
    return [dropped, failed]


def _cumulative(buckets: list[int]) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, count in zip((*BUCKETS, float("inf")), buckets, strict=False):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return out


def _merge_custom(custom: dict[str, Metric], text: str, labels: dict, app_id: str) -> None:
    """An application's own metrics, with its worker's labels, merged by family."""
    try:
        parsed = list(text_string_to_metric_families(text))
    except ValueError as exc:
        logger.bind(app=app_id).warning(f"could not read the application's metrics: {exc}")
        return
    for family in parsed:
        if family.name.startswith(_SKIPPED_CUSTOM):
            continue
        merged = custom.get(family.name)
        if merged is None:
            merged = custom[family.name] = Metric(family.name, family.documentation,
                                                  family.type, family.unit)
        elif merged.type != family.type:
            continue  # two applications disagree on a name's type: keep the first
        merged.samples += [sample._replace(labels={**sample.labels, **labels})
                           for sample in family.samples]


def as_json(text: str) -> list[dict]:
    """The text format as JSON: ``[{name, type, help, samples: [{name, labels, value}]}]``."""
    return [{"name": family.name, "type": family.type, "help": family.documentation,
             "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                         for s in family.samples]}
            for family in text_string_to_metric_families(text)]
