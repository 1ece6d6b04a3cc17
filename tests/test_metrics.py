"""/metrics: one Prometheus view of every worker, labelled, summed correctly across workers."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import app_config, recording_server, wait_for

from watt.observability.metrics import as_json, families

WORKER_FAMILIES = {
    "http_request_duration_seconds": "histogram",
    "http_request_summary_seconds": "summary",
    "http_requests": "counter",
    "http_requests_in_flight": "gauge",
    "watt_worker_event_loop_utilization": "gauge",
    "watt_worker_cpu_seconds": "counter",
    "watt_worker_gc_collections": "counter",
    "watt_worker_gc_objects_collected": "counter",
}


def parse(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family, name: str | None = None, **labels) -> list:
    return [s for s in family.samples if (name is None or s.name == name)
            and all(s.labels.get(k) == v for k, v in labels.items())]


@pytest.fixture
def two_workers(watt_runtime):
    return watt_runtime({
        "entrypoint": "front",
        "metrics": {"enabled": True, "port": 0, "labels": {"region": "eu"}},
        "applications": [app_config("front", workers=2),
                         app_config("back", isolation="process")]})


def test_metrics_cover_every_worker_with_labels_and_sum_across_workers(two_workers):
    rt = two_workers
    # A connection per request: each new connection goes to the worker with the fewest
    # (a kept-alive one stays with its worker, as under uvicorn or Gunicorn).
    with httpx.Client(base_url=rt.url, headers={"connection": "close"}) as client:
        for _ in range(10):
            assert client.get("/whoami").status_code == 200
        for _ in range(3):
            assert client.get("/mesh?target=back.plt.local").status_code == 200
        assert client.get("/nothing-here").status_code == 404
    reply = httpx.get(f"{rt.runtime.metrics_url}/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    found = parse(reply.text)
    for name, kind in WORKER_FAMILIES.items():
        assert found[name].type == kind, name
        workers = {(s.labels["applicationId"], s.labels["workerId"]) for s in found[name].samples}
        assert workers == {("front", "0"), ("front", "1"), ("back", "0")}, name
    ok = samples(found["http_requests"], "http_requests_total", applicationId="front",
                 method="GET", status_code="200")
    assert len(ok) == 2  # both workers served: two label sets, never one overwritten
    assert sum(s.value for s in ok) == 13
    assert sum(s.value for s in samples(found["http_requests"], applicationId="front",
                                        status_code="404")) == 1
    assert sum(s.value for s in samples(found["http_requests"], applicationId="back")) == 3
    count = samples(found["http_request_duration_seconds"],
                    "http_request_duration_seconds_count", applicationId="front",
                    status_code="200")
    assert sum(s.value for s in count) == 13
    inf = samples(found["http_request_duration_seconds"], "http_request_duration_seconds_bucket",
                  applicationId="front", status_code="200", le="+Inf")
    assert sum(s.value for s in inf) == 13
    quantiles = samples(found["http_request_summary_seconds"], applicationId="front")
    assert {s.labels.get("quantile") for s in quantiles} >= {"0.5", "0.9", "0.99"}
    mesh = samples(found["watt_mesh_requests"], "watt_mesh_requests_total",
                   applicationId="front", target="back", status_code="200")
    assert sum(s.value for s in mesh) == 3
    assert sum(s.value for s in samples(found["watt_mesh_request_duration_seconds"],
                                        "watt_mesh_request_duration_seconds_count")) == 3
    memory = samples(found["watt_worker_resident_memory_bytes"])
    assert [s.labels["applicationId"] for s in memory] == ["back"]  # process workers only
    assert memory[0].value > 10e6
    assert samples(found["watt_worker_restarts"], applicationId="front")[0].value == 0
    assert samples(found["watt_workers"], applicationId="front", status="ready")[0].value == 2
    assert found["process_resident_memory_bytes"].samples[0].value > 10e6  # the runtime's own
    for family in found.values():  # metrics.labels reach every sample
        assert all(s.labels.get("region") == "eu" for s in family.samples), family.name


def test_an_applications_own_prometheus_metrics_are_labelled_per_worker(two_workers):
    rt = two_workers
    # A connection per request: each new connection goes to the worker with the fewest
    # (a kept-alive one stays with its worker, as under uvicorn or Gunicorn).
    with httpx.Client(base_url=rt.url, headers={"connection": "close"}) as client:
        for _ in range(8):
            assert client.get("/count").status_code == 200
    found = parse(rt.metrics())
    hits = samples(found["app_hits"], "app_hits_total", route="/count")
    assert sorted(s.labels["workerId"] for s in hits) == ["0", "1"]
    assert {s.labels["applicationId"] for s in hits} == {"front"}
    assert sum(s.value for s in hits) == 8
    # The worker's own process_* families are not repeated: the runtime reports its process.
    assert all("workerId" not in s.labels for s in found["process_cpu_seconds"].samples)


def test_metrics_basic_auth(watt_runtime):
    rt = watt_runtime({"applications": [app_config("a")], "metrics": {
        "enabled": True, "port": 0, "endpoint": "/prom",
        "auth": {"username": "scraper", "password": "pw"}}})
    base = rt.runtime.metrics_url
    assert httpx.get(f"{base}/prom").status_code == 401
    assert httpx.get(f"{base}/prom", auth=("scraper", "wrong")).status_code == 401
    reply = httpx.get(f"{base}/prom", auth=("scraper", "pw"))
    assert reply.status_code == 200 and "http_requests_in_flight" in reply.text
    assert httpx.get(f"{base}/ready").status_code == 200  # probes stay open
    assert httpx.get(f"{base}/metrics").status_code == 404


def test_metrics_are_pushed_to_a_pushgateway(watt_runtime):
    with recording_server() as (url, received):
        rt = watt_runtime({"applications": [app_config("pushed")], "metrics": {
            "push": {"url": url, "job": "shop", "interval": 100}}})
        assert rt.inject("pushed", "GET", "/whoami").status == 200
        wait_for(lambda: any(b"http_requests_total" in body and b'applicationId="pushed"'
                             in body for *_, body in received))
        assert received[0][:2] == ("PUT", "/metrics/job/shop")


def _otlp_metrics(body: bytes) -> dict:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    request = ExportMetricsServiceRequest.FromString(body)
    [resource] = request.resource_metrics
    return {"resource": {a.key: a.value.string_value for a in resource.resource.attributes},
            "metrics": {m.name: m for scope in resource.scope_metrics for m in scope.metrics}}


def test_metrics_are_pushed_as_otlp(watt_runtime):
    with recording_server() as (url, received):
        rt = watt_runtime({"applications": [app_config("pushed", workers=2)], "metrics": {
            "otlp": {"endpoint": f"{url}/v1/metrics", "interval": 100, "serviceName": "shop",
                     "headers": {"x-api-key": "k1"}}}})
        for _ in range(4):
            assert rt.inject("pushed", "GET", "/whoami").status == 200

        def four_requests():
            for method, path, headers, body in list(received):
                metrics = _otlp_metrics(body)["metrics"]
                counted = metrics.get("http_requests")
                if counted is not None and sum(
                        p.as_double for p in counted.sum.data_points) == 4:
                    return method, path, headers, body
            return None

        wait_for(four_requests)
        method, path, headers, body = four_requests()
    assert (method, path) == ("POST", "/v1/metrics")
    headers = {key.lower(): value for key, value in headers.items()}
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-api-key"] == "k1"
    decoded = _otlp_metrics(body)
    assert decoded["resource"]["service.name"] == "shop"
    requests = decoded["metrics"]["http_requests"].sum
    assert requests.is_monotonic
    labels = [{a.key: a.value.string_value for a in p.attributes} for p in requests.data_points]
    workers = {(x["applicationId"], x["workerId"]) for x in labels}
    assert workers == {("pushed", "0"), ("pushed", "1")}  # round robin: both served
    duration = decoded["metrics"]["http_request_duration_seconds"].histogram
    point = duration.data_points[0]
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    assert sum(point.bucket_counts) == point.count
    summary = decoded["metrics"]["http_request_summary_seconds"]
    assert summary.summary.data_points[0].quantile_values


def test_families_from_snapshots_are_pure():
    snapshot = {"app": "a", "worker": 1, "isolation": "subinterpreter", "data": {
        "requests": [["GET", 200, 2, 0.3, [1, 0, 0, 0, 0, 0, 1] + [0] * 8]],
        "mesh": [], "inFlight": 1, "quantiles": [0.1] * 7, "elu": 0.25, "cpu": 1.5,
        "memory": None, "gc": [[3, 10, 0]], "custom": None}}
    pool = {"id": "a", "restarts": 2, "workers": [{"status": "ready"}, {"status": "starting"}]}
    found = {f.name: f for f in families([snapshot], [pool])}
    buckets = samples(found["http_request_duration_seconds"],
                      "http_request_duration_seconds_bucket")
    assert [s.value for s in buckets][:7] == [1, 1, 1, 1, 1, 1, 2]  # cumulative
    assert samples(found["watt_worker_event_loop_utilization"])[0].value == 0.25
    assert samples(found["watt_worker_restarts"])[0].value == 2
    assert {s.labels["status"] for s in found["watt_workers"].samples} == {"ready", "starting"}


def test_as_json_reads_the_text_format():
    text = '# HELP x_total X.\n# TYPE x_total counter\nx_total{a="1"} 3.0\n'
    assert as_json(text) == [{"name": "x", "type": "counter", "help": "X.",
                              "samples": [{"name": "x_total", "labels": {"a": "1"},
                                           "value": 3.0}]}]
