"""The mesh: explicit API, headers along every hop, chains, fan-out, failures, WebSocket."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from support import app_config, reset_memory_high_water, status_kb, wait_for

from watt.testing import RuntimeHandle


@pytest.fixture(scope="module")
def mesh():
    config = {
        "entrypoint": "a",
        "mesh": {"timeout": 20},
        "applications": [
            app_config("a"),
            app_config("b", workers=2),
            app_config("c", isolation="process"),
            app_config("mid"),
        ],
    }
    with RuntimeHandle(config) as rt:
        yield rt


def call(rt, route: str, **params) -> dict:
    response = httpx.get(rt.url + route, params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_fetch_reaches_each_worker_of_the_target_in_turn(mesh):
    seen = [json.loads(call(mesh, "/fetch", target="b.plt.local")["body"])["interpreter"]
            for _ in range(5)]
    # The first call goes through the main side, which then links the caller to
    # each worker of b: from the second call on, the caller alternates itself.
    assert seen[1] != seen[2] and seen[1] == seen[3] and seen[2] == seen[4]


def test_fetch_sync_and_transport(mesh):
    assert call(mesh, "/fetch-sync", target="c.plt.local")["body"]["pid"] != os.getpid()
    assert call(mesh, "/transport", target="b.plt.local")["app"] == "b"


def test_unknown_application(mesh):
    reply = call(mesh, "/fetch", target="zzz.plt.local")
    assert reply["code"] == "WATT_MESH_UNKNOWN_APP"
    assert "'zzz'" in reply["message"] and "b, c, mid" in reply["message"]


def test_timeout_is_reported_with_its_code(mesh):
    reply = call(mesh, "/fetch", target="mid.plt.local", path="/slow?delay=5", timeout="0.2")
    assert reply["code"] == "WATT_MESH_TIMEOUT"


def test_a_slow_target_does_not_block_calls_to_others(mesh):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(call, mesh, "/fetch", target="mid.plt.local", path="/slow?delay=3")
        fast = call(mesh, "/fetch", target="b.plt.local")
        assert fast["status"] == 200
        assert not slow.done()  # answered while the slow call is still waiting
        assert slow.result()["status"] == 200


def test_a_to_b_to_a_chain(mesh):
    assert call(mesh, "/chain", path="b,a,c,a") == ["a", "b", "a", "c", "a"]


def test_fan_out_of_100_concurrent_calls(mesh):
    reply = call(mesh, "/fanout", target="b.plt.local", n="100")
    assert reply["ok"] == 100 and len(reply["workers"]) == 2


def test_request_id_and_trace_context_travel_along(mesh):
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    reply = httpx.get(mesh.url + "/mesh-headers", params={"target": "b.plt.local"},
                      headers={"traceparent": traceparent, "x-forwarded-for": "203.0.113.9"},
                      timeout=30).json()
    mine, theirs = reply["mine"], reply["theirs"]
    assert len(mine["x-request-id"]) == 32  # created at the entrypoint
    assert theirs["x-request-id"] == mine["x-request-id"]
    assert theirs["traceparent"] == mine["traceparent"] == traceparent
    # No server.trustedProxies: the client's own x-forwarded-for is replaced, not kept.
    assert mine["x-forwarded-for"] == "127.0.0.1"
    assert mine["x-forwarded-proto"] == "http"
    assert mine["x-forwarded-host"] == mesh.url.removeprefix("http://")
    assert theirs["host"] == "b.plt.local"


def test_a_client_request_id_is_kept(mesh):
    reply = httpx.get(mesh.url + "/mesh-headers", params={"target": "c.plt.local"},
                      headers={"x-request-id": "abc-123"}, timeout=30).json()
    assert reply["mine"]["x-request-id"] == reply["theirs"]["x-request-id"] == "abc-123"


def test_websocket_through_the_mesh(mesh):
    for target in ("b.plt.local", "c.plt.local"):
        reply = call(mesh, "/ws-mesh", target=target)
        assert reply == {"text": f"{target.split('.')[0]}: hello", "bytes": "zyx",
                         "closed": "WATT_MESH_WS_CLOSED", "code": 4001, "subprotocol": "chat"}


def test_100_mb_through_two_mesh_hops_with_bounded_memory(mesh):
    size = 100 * 1024 * 1024
    baseline = reset_memory_high_water()
    received = 0
    with httpx.Client(timeout=120) as client, client.stream(
            "GET", mesh.url + "/relay", params={"via": "mid,b", "size": str(size)}) as response:
        for piece in response.iter_raw():
            received += len(piece)
    assert received == size
    growth_mb = (status_kb("VmHWM") - baseline) / 1024
    assert growth_mb < 100, f"memory grew by {growth_mb:.0f} MB for 100 MB over two hops"


def test_rt_mesh_reaches_every_application(mesh):
    assert mesh.mesh.get("http://c.plt.local/whoami").json()["app"] == "c"
    assert mesh.mesh.post("http://b.plt.local/upload", content=b"abc").json()["bytes"] == 3


def test_target_worker_death_mid_call_is_a_502_for_the_caller(watt_runtime):
    rt = watt_runtime({"entrypoint": "a", "restartOnError": False, "applications": [
        app_config("a"), app_config("p", isolation="process")]})
    reply = httpx.get(rt.url + "/fetch", params={"target": "p.plt.local", "path": "/crash"},
                      timeout=30).json()
    assert reply["status"] == 502
    assert json.loads(reply["body"])["code"] == "WATT_MESH_WORKER_DIED"
    # The dead worker is no longer picked: the next call says so at once.
    again = httpx.get(rt.url + "/fetch", params={"target": "p.plt.local"}, timeout=30).json()
    assert again["code"] == "WATT_NO_WORKER"


def test_calls_go_over_direct_links_after_the_first(watt_runtime):
    rt = watt_runtime({"entrypoint": "a", "applications": [
        app_config("a"), app_config("b", workers=2)]})
    assert len(rt.runtime.router.links) == 0
    for _ in range(3):
        assert httpx.get(rt.url + "/fetch", params={"target": "b.plt.local"},
                         timeout=30).json()["status"] == 200
    assert len(rt.runtime.router.links) == 2  # a#0 -> b#0 and a#0 -> b#1


def test_a_linked_worker_that_dies_is_dropped_and_others_answer(watt_runtime):
    rt = watt_runtime({"entrypoint": "a", "restartOnError": False, "applications": [
        app_config("a"), app_config("b", workers=2)]})

    def fetch(path="/whoami"):
        return httpx.get(rt.url + "/fetch", params={"target": "b.plt.local", "path": path},
                         timeout=30).json()

    fetch()  # links a to both workers of b
    died = fetch("/die")
    assert died["status"] in (500, 502)  # the call ends, it does not hang
    survivors = {json.loads(fetch()["body"])["interpreter"] for _ in range(4)}
    assert len(survivors) == 1
    def statuses():
        return sorted(w["status"] for a in rt.applications() if a["id"] == "b"
                      for w in a["workers"])

    wait_for(lambda: statuses() == ["dead", "ready"])


def test_a_target_that_answers_before_reading_the_upload_does_not_hang_it(mesh):
    assert call(mesh, "/mesh-upload-rejected", target="b.plt.local") == {"status": 413}
    # Through the entrypoint too: a 2 MB upload refused before it is read.
    response = httpx.post(mesh.url + "/reject-upload", content=b"x" * (2 * 1024 * 1024),
                          timeout=30)
    assert response.status_code == 413
