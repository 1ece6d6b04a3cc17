"""The runtime end to end: real subinterpreters, real processes, real sockets on 127.0.0.1."""

from __future__ import annotations

import os

import httpx
import pytest
from support import app_config, listening_ports, reset_memory_high_water, status_kb

from watt.testing import RuntimeHandle


@pytest.fixture(scope="module", params=["watt", "granian", "hypercorn"])
def stack(request):
    config = {
        "entrypoint": "front",
        "limits": {"maxBodySize": 300 * 1024 * 1024},  # the 200 MB upload below
        "applications": [
            app_config("front", env={"FOO": "front-foo"}),
            app_config("back", workers=2, env={"FOO": "back-foo"}),
            app_config("proc", isolation="process", env={"FOO": "proc-foo"}),
        ],
    }
    with RuntimeHandle(config, engine=request.param) as rt:
        yield rt


def get(rt, path: str, **kwargs) -> httpx.Response:
    return httpx.get(rt.url + path, timeout=30, **kwargs)


def test_entrypoint_app_runs_in_a_subinterpreter_of_this_process(stack):
    info = get(stack, "/whoami?x=1").json()
    assert info["app"] == "front"
    assert info["pid"] == os.getpid()
    assert info["interpreter"] != 0  # 0 is the main interpreter
    assert info["query"] == "x=1"
    assert info["state"] == "front"  # lifespan startup state reached the request


def test_each_application_sees_its_own_env_and_path(stack):
    front = stack.inject("front", "GET", "/whoami").json()
    back = stack.inject("back", "GET", "/whoami").json()
    assert (front["foo"], back["foo"]) == ("front-foo", "back-foo")
    assert front["sys_path0"].endswith(os.path.join("apps", "basic"))
    assert "FOO" not in os.environ  # putenv would have leaked into the whole process


def test_process_isolation_runs_in_another_pid(stack):
    info = stack.inject("proc", "GET", "/whoami").json()
    assert info["pid"] != os.getpid()
    assert info["foo"] == "proc-foo"
    assert [a["isolation"] for a in stack.applications() if a["id"] == "proc"] == ["process"]


def test_mesh_call_over_httpx_opens_no_socket(stack):
    reply = get(stack, "/mesh", params={"target": "back.plt.local"}).json()
    assert reply["status"] == 200
    assert '"app": "back"' in reply["body"]
    assert reply["sockets"] == 0


def test_mesh_round_robins_over_the_target_workers(stack):
    seen = set()
    for _ in range(4):
        reply = get(stack, "/mesh", params={"target": "back.plt.local"}).json()
        seen.add(httpx.Response(200, content=reply["body"]).json()["interpreter"])
    assert len(seen) == 2


def test_mesh_reaches_a_process_worker_and_sync_httpx_works(stack):
    reply = get(stack, "/mesh-sync", params={"target": "proc.plt.local"}).json()
    assert reply["status"] == 200
    assert reply["body"]["pid"] != os.getpid()


def test_mesh_from_a_process_worker(stack):
    reply = stack.inject("proc", "GET", "/mesh?target=back.plt.local").json()
    assert reply["status"] == 200 and reply["sockets"] == 0


def test_mesh_unknown_application_is_a_clear_error(stack):
    response = get(stack, "/mesh", params={"target": "nope.plt.local"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert "WATT_MESH_UNKNOWN_APP" in error and "'nope'" in error and "back" in error


def test_mesh_streams_large_bodies_both_ways(stack):
    size = 20 * 1024 * 1024
    reply = get(stack, f"/mesh-big?target=back.plt.local&size={size}").json()
    assert reply == {"down": size, "up": size}


def test_200_mb_upload_and_download_with_bounded_memory(stack):
    size = 200 * 1024 * 1024
    chunk = b"z" * (256 * 1024)
    baseline = reset_memory_high_water()

    def body():
        for _ in range(size // len(chunk)):
            yield chunk

    with httpx.Client(timeout=120) as client:
        up = client.post(stack.url + "/upload", content=body()).json()
        down = 0
        with client.stream("GET", stack.url + f"/download?size={size}") as response:
            for piece in response.iter_raw():
                down += len(piece)
    assert up["bytes"] == size
    assert down == size
    growth_mb = (status_kb("VmHWM") - baseline) / 1024
    assert growth_mb < 100, f"memory grew by {growth_mb:.0f} MB for a 200 MB transfer"


def test_client_disconnect_reaches_the_app(stack):
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", stack.url + "/wait-disconnect") as response:
            assert next(response.iter_lines()) == "waiting"
        # leaving the block closes the connection mid-response
    assert get(stack, "/disconnect-seen").json() == {"seen": "disconnect"}


def test_unhandled_error_is_a_500_without_the_exception_text(stack):
    response = get(stack, "/boom")
    assert response.status_code == 500
    assert response.json()["code"] == "WATT_APP_UNHANDLED_ERROR"
    assert "secret-token" not in response.text


def test_http2_cleartext(stack):
    if stack.runtime._engine.name == "watt":
        pytest.skip("the watt engine speaks HTTP/1.1 only (granian serves HTTP/2)")
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        response = client.get(stack.url + "/whoami")
    assert response.http_version == "HTTP/2"
    assert response.json()["http_version"] == "2"


def test_websocket_through_the_entrypoint(stack):
    from websockets.sync.client import connect

    ws_url = stack.url.replace("http://", "ws://") + "/ws"
    with connect(ws_url, subprotocols=["chat"], open_timeout=30) as ws:
        assert ws.subprotocol == "chat"
        ws.send("hi")
        assert ws.recv(timeout=30) == "front: hi"
        ws.send(b"abc")
        assert ws.recv(timeout=30) == b"cba"
        ws.send("close")
        with pytest.raises(Exception) as info:
            ws.recv(timeout=30)
    assert getattr(info.value, "rcvd", None) is not None and info.value.rcvd.code == 4001


def test_inject_reaches_any_application_without_a_socket(stack):
    response = stack.inject("back", "POST", "/upload", body=b"12345")
    assert response.status == 200
    assert response.json()["bytes"] == 5
    assert response.header("content-type") == "application/json"


def test_only_the_entrypoint_listens(stack):
    port = int(stack.url.rsplit(":", 1)[1])
    assert listening_ports({os.getpid()}) == {port}


def test_the_socket_audit_counts_a_real_network_call(stack):
    # The same route, aimed at a real address, does open a socket: the
    # zero above is a measurement, not a constant.
    target = stack.url.removeprefix("http://")
    reply = get(stack, "/mesh", params={"target": target, "path": "/whoami"}).json()
    assert reply["status"] == 200
    assert reply["sockets"] > 0
