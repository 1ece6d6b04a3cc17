"""Metrics of the main process itself: active connections at the entrypoint (the watt
engine's open connections; requests and WebSockets in progress for an ASGI engine),
constant labels on them, and metrics.collectionInterval."""

from __future__ import annotations

import re
import socket
import threading

import httpx
import pytest
from support import app_config, wait_for


def gauge(text: str, engine: str) -> float | None:
    prefix = f'watt_entrypoint_active_connections{{engine="{engine}",region="eu"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines()
                 if line.startswith(prefix)), None)


def config(**metrics) -> dict:
    return {"entrypoint": "a", "metrics": {"labels": {"region": "eu"}, **metrics},
            "applications": [app_config("a")]}


def kept_alive(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(b"GET /whoami HTTP/1.1\r\nhost: x\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return sock


def test_open_connections_of_the_watt_engine(watt_runtime):
    rt = watt_runtime(config(), engine="watt")
    assert gauge(rt.metrics(), "watt") == 0
    first, second = kept_alive(rt.url), kept_alive(rt.url)
    assert gauge(rt.metrics(), "watt") == 2
    first.close()
    second.close()
    wait_for(lambda: gauge(rt.metrics(), "watt") == 0)


@pytest.mark.parametrize("engine", ["hypercorn", "granian"])
def test_requests_in_progress_of_an_asgi_engine(watt_runtime, engine):
    if engine == "granian":
        pytest.importorskip("granian.server.embed", reason="granian is not installed")
    rt = watt_runtime(config(), engine=engine)
    assert gauge(rt.metrics(), engine) == 0
    done = threading.Event()
    thread = threading.Thread(target=lambda: (httpx.get(f"{rt.url}/slow?delay=0.8",
                                                        timeout=20), done.set()))
    thread.start()
    wait_for(lambda: gauge(rt.metrics(), engine) == 1)
    thread.join(20)
    assert done.is_set() and gauge(rt.metrics(), engine) == 0


def test_a_collection_interval_reuses_the_workers_numbers(watt_runtime):
    rt = watt_runtime(config(collectionInterval=60_000), engine="watt")
    count = re.compile(r'^http_requests_total\{applicationId="a",.*\} (\S+)$', re.MULTILINE)
    assert httpx.get(f"{rt.url}/whoami").status_code == 200
    # the worker has counted it (asked directly, around the interval)...
    wait_for(lambda: any(s["data"].get("requests") for s in rt._call(
        rt.runtime.metrics._ask_workers())))
    first = rt.metrics()  # ...then collected once
    assert [float(v) for v in count.findall(first)] == [1.0]
    sock = kept_alive(rt.url)  # a second request, on a connection that stays open
    again = rt.metrics()
    assert [float(v) for v in count.findall(again)] == [1.0]  # the same snapshot
    assert gauge(again, "watt") == 1  # the main process's own numbers are current
    sock.close()
