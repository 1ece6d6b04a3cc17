"""Limits at the entrypoint, and malformed HTTP on raw sockets, on both engines."""

from __future__ import annotations

import concurrent.futures
import socket

import httpx
import pytest
from support import app_config, wait_for

from watt.testing import RuntimeHandle

LIMITS = {"maxBodySize": 1024 * 1024, "requestTimeout": 500, "maxConcurrency": 2,
          "headerTimeout": 1000, "maxHeaderSize": 8192}


@pytest.fixture(scope="module", params=["watt", "granian", "hypercorn"])
def rt(request):
    config = {"limits": LIMITS, "applications": [app_config("a")]}
    with RuntimeHandle(config, engine=request.param) as handle:
        yield handle


def test_a_declared_body_over_the_limit_is_refused_before_the_app(rt):
    response = httpx.post(rt.url + "/upload", content=b"x" * (2 * 1024 * 1024), timeout=30)
    assert response.status_code == 413
    assert response.json()["code"] == "WATT_BODY_TOO_LARGE"
    assert httpx.post(rt.url + "/upload", content=b"x" * 1000, timeout=30).json()["bytes"] == 1000


def test_a_streamed_body_over_the_limit_is_cut_with_413(rt):
    def body():
        for _ in range(40):
            yield b"y" * 65536

    response = httpx.post(rt.url + "/upload", content=body(), timeout=30)
    assert response.status_code == 413


def test_an_app_too_slow_to_answer_gets_504(rt):
    response = httpx.get(rt.url + "/slow", params={"delay": "5"}, timeout=30)
    assert response.status_code == 504
    assert response.json()["code"] == "WATT_REQUEST_TIMEOUT"


@pytest.mark.parametrize("engine", ["watt", "granian", "hypercorn"])
def test_requests_over_max_concurrency_get_503_with_retry_after(watt_runtime, engine):
    rt = watt_runtime({"limits": {"maxConcurrency": 2}, "applications": [app_config("a")]},
                      engine=engine)
    pool_state = rt.runtime.pools["a"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(httpx.get, rt.url + "/slow", params={"delay": "2"}, timeout=30)
                for _ in range(2)]
        wait_for(lambda: pool_state.in_flight == 2)
        refused = httpx.get(rt.url + "/whoami", timeout=30)
        assert [f.result().status_code for f in slow] == [200, 200]
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["code"] == "WATT_OVERLOADED"
    assert httpx.get(rt.url + "/whoami", timeout=30).status_code == 200


def _raw(rt, data: bytes) -> bytes:
    port = int(rt.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        return sock.recv(4096)


def test_oversized_headers_get_431(rt):
    reply = _raw(rt, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431")


def test_malformed_http_gets_400_and_the_server_keeps_serving(rt):
    assert _raw(rt, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _raw(rt, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n").startswith(
        b"HTTP/1.1 400")
    assert httpx.get(rt.url + "/whoami", timeout=30).status_code == 200


def test_a_client_that_never_finishes_its_head_is_disconnected(rt):
    # Slowloris: the head never ends; the server closes the connection (bounded
    # by the socket timeout above, so a server that waits forever fails the test).
    reply = _raw(rt, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408")


def _busy(rt, app_id: str) -> bool:
    """A worker of ``app_id`` is serving a request (its in-flight metric)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(rt.metrics()):
        if family.name == "http_requests_in_flight":
            return any(s.labels["applicationId"] == app_id and s.value >= 1
                       for s in family.samples)
    return False


def test_an_applications_own_max_concurrency_covers_the_mesh_too(watt_runtime):
    rt = watt_runtime({"entrypoint": "front", "applications": [
        app_config("front"), app_config("back", maxConcurrency=1)]})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, rt.url + "/mesh", params={
            "target": "back.plt.local", "path": "/slow?delay=2"}, timeout=30)
        wait_for(lambda: _busy(rt, "back"))
        refused = httpx.get(rt.url + "/mesh", params={"target": "back.plt.local"}, timeout=30)
        direct = rt.inject("back", "GET", "/whoami")  # through the runtime, not the mesh
        assert slow.result().json()["status"] == 200
    body = refused.json()
    assert body["status"] == 503  # what the calling application got over the mesh
    assert "WATT_OVERLOADED" in body["body"]
    assert direct.status == 503 and direct.header("retry-after") == "1"
    assert httpx.get(rt.url + "/mesh", params={"target": "back.plt.local"},
                     timeout=30).json()["status"] == 200  # free again


def test_an_applications_own_graceful_shutdown_bounds_its_drain(watt_runtime):
    rt = watt_runtime({"gracefulShutdown": {"application": 30000}, "applications": [
        app_config("quick", gracefulShutdown=200)]})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, rt.url + "/slow", params={"delay": "20"}, timeout=60)
        wait_for(lambda: _busy(rt, "quick"))
        rt.stop()  # the drain waits 0.2 s for the request, not 30 s nor the 20 s it takes
        try:
            status = slow.result().status_code
        except httpx.HTTPError:  # cut: the connection closed without an answer
            status = None
        assert status != 200
