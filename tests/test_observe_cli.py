"""`watt logs` and `watt metrics`, run as subprocesses against a real runtime
(`watt start`), and the management API's /logs and /metrics behind them."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import app_config, wait_for, watt_start


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    config = tmp_path_factory.mktemp("observe-cli") / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "entrypoint": "web", "applications": [
        app_config("web", workers=2), app_config("api", isolation="process")]}))
    with watt_start(config, "wl-") as (proc, xdg):
        url = proc.wait_url()
        yield SimpleNamespace(proc=proc, url=url, xdg=xdg,
                              socket=xdg / "watt" / f"{proc.proc.pid}.sock")


def watt(runtime, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watt.cli", *args], capture_output=True,
                          text=True, timeout=60, env={"XDG_RUNTIME_DIR": str(runtime.xdg),
                                                      "PATH": "/usr/bin:/bin"})


def test_watt_metrics_prints_every_workers_metrics(runtime):
    with httpx.Client(base_url=runtime.url) as client:
        for _ in range(6):
            assert client.get("/mesh?target=api.plt.local").status_code == 200
    done = watt(runtime, "metrics")
    assert done.returncode == 0, done.stderr
    families = {f.name: f for f in text_string_to_metric_families(done.stdout)}
    web = [s for s in families["http_requests"].samples
           if s.name == "http_requests_total" and s.labels["applicationId"] == "web"
           and s.labels["status_code"] == "200"]
    assert sum(s.value for s in web) >= 6
    api = [s for s in families["http_requests"].samples if s.labels["applicationId"] == "api"]
    assert sum(s.value for s in api) >= 6
    as_json = watt(runtime, "metrics", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    names = {family["name"] for family in json.loads(as_json.stdout)}
    assert {"http_requests", "watt_mesh_requests", "process_resident_memory_bytes"} <= names


def test_watt_logs_prints_recent_lines_of_one_application(runtime):
    assert httpx.get(f"{runtime.url}/mesh?target=api.plt.local",
                     headers={"x-request-id": "logs-cli-1"}).status_code == 200

    def api_lines() -> list[dict]:
        done = watt(runtime, "logs", "api", "-n", "50")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line]

    wait_for(lambda: any(r.get("reqId") == "logs-cli-1" for r in api_lines()))
    records = api_lines()
    assert {r["app"] for r in records} == {"api"} and len(records) <= 50
    errors = watt(runtime, "logs", "--level", "error")
    assert errors.returncode == 0
    assert all(json.loads(line)["level"] in ("error", "critical")
               for line in errors.stdout.splitlines() if line)


def test_watt_logs_follow_streams_new_lines(runtime):
    proc = subprocess.Popen([sys.executable, "-m", "watt.cli", "logs", "web", "-f", "-n", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"XDG_RUNTIME_DIR": str(runtime.xdg), "PATH": "/usr/bin:/bin"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout],
                     daemon=True).start()
    try:
        seen: list[dict] = []

        def followed() -> bool:
            # Requests until one of them shows up: the follower may subscribe late.
            httpx.get(f"{runtime.url}/whoami", headers={"x-request-id": "followed"})
            while not lines.empty():
                line = lines.get()
                if line.strip():
                    seen.append(json.loads(line))
            return any(r.get("reqId") == "followed" for r in seen)

        wait_for(followed)
        assert {r["app"] for r in seen} == {"web"}
        assert proc.poll() is None  # still following
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_unknown_application_or_bad_parameters(runtime):
    done = watt(runtime, "logs", "nope")
    assert done.returncode == 1
    assert "nope" in done.stderr
    transport = httpx.HTTPTransport(uds=str(runtime.socket))
    with httpx.Client(transport=transport, base_url="http://watt/api/v1") as api:
        for query in ("level=loud", "lines=-1", "lines=x"):
            reply = api.get(f"/logs?{query}")
            assert reply.status_code == 400, query
            assert reply.json()["code"] == "WATT_MANAGEMENT_BAD_REQUEST"
        assert api.get("/metrics?format=xml").status_code == 400
        reply = api.get("/logs?app=watt&lines=5")
        assert reply.headers["content-type"] == "application/x-ndjson"
        assert all(json.loads(line)["app"] == "watt" for line in reply.text.splitlines())
