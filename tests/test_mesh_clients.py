"""urllib3, requests, urllib and aiohttp on the mesh, end to end in a real runtime.

The caller app (tests/apps/clients) makes each call from inside a worker —
a subinterpreter and a child process — and reports what its client saw and
how many socket events its interpreter raised meanwhile: zero for a mesh
call, more than zero for the same client aimed at the runtime's real URL.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest
from support import app_config

from watt.testing import RuntimeHandle

CLIENTS = ["urllib3", "requests", "urllib", "aiohttp"]
SYNC_CLIENTS = ["urllib3", "requests", "urllib"]
CALLERS = {"sub": "callsub", "proc": "callproc"}

#: The exception each client raises for a call that reached no application / timed out.
UNREACHABLE = {
    "urllib3": "urllib3.exceptions.NewConnectionError",
    "requests": "requests.exceptions.ConnectionError",
    "urllib": "urllib.error.URLError",
    "aiohttp": "aiohttp.client_exceptions.ClientConnectorError",
}
TIMED_OUT = {
    "urllib3": "urllib3.exceptions.ReadTimeoutError",
    "requests": "requests.exceptions.ReadTimeout",
    "urllib": "urllib.error.URLError",
    "aiohttp": "aiohttp.client_exceptions.SocketTimeoutError",
}
#: Request body kinds each client accepts (str: urllib refuses it; json=: aiohttp's own).
BODIES = {
    "urllib3": ["bytes", "str", "file", "iter"],
    "requests": ["bytes", "str", "file", "iter"],
    "urllib": ["bytes", "file", "iter"],
    "aiohttp": ["bytes", "str", "file", "iter", "json"],
}


def _payload(size: int) -> bytes:  # the same bytes as tests/apps/clients/main.py sends
    return (b"watt mesh 0123456789 abcdefghij\n" * (size // 32 + 1))[:size]


@pytest.fixture(scope="module")
def rt():
    config = {
        "entrypoint": "target",
        "applications": [
            app_config("target"),
            app_config("callsub", folder="clients", isolation="subinterpreter"),
            app_config("callproc", folder="clients", isolation="process"),
        ],
    }
    with RuntimeHandle(config) as handle:
        yield handle


@pytest.fixture(params=list(CALLERS), ids=list(CALLERS))
def caller(request) -> str:
    return CALLERS[request.param]


def call(rt, caller: str, client: str, url: str, **params) -> dict:
    """Have ``caller`` make one request with ``client``; returns its report."""
    query = urlencode({"client": client, "url": url, **params})
    response = rt.inject(caller, "GET", f"/call?{query}")
    assert response.status == 200, response.text
    return response.json()


def assert_ok(reply: dict, status: int = 200) -> None:
    assert reply.get("error") is None, reply.get("error")
    assert reply["status"] == status


def assert_error(reply: dict, error_type: str, code: str) -> None:
    assert reply.get("error") is not None, f"expected {error_type}, got {reply}"
    assert error_type in reply["error_types"], reply
    assert code in reply["error"], reply["error"]


def test_each_client_is_patched_once_by_the_import_hook(rt, caller):
    flags = rt.inject(caller, "GET", "/patched").json()
    assert flags == {"urllib3": True, "urllib.request": True, "aiohttp": True}


@pytest.mark.parametrize("client", CLIENTS)
def test_get_json_goes_over_the_mesh_without_a_socket(rt, caller, client):
    reply = call(rt, caller, client, "http://target.plt.local/whoami?x=1")
    assert_ok(reply)
    assert reply["json"]["app"] == "target"
    assert reply["json"]["host"] == "target.plt.local"
    assert (reply["json"]["method"], reply["json"]["query"]) == ("GET", "x=1")
    assert reply["sockets"] == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_the_same_client_still_reaches_other_hosts_over_the_network(rt, caller, client):
    reply = call(rt, caller, client, rt.url + "/whoami")
    assert_ok(reply)
    assert reply["json"]["app"] == "target"
    assert reply["sockets"] > 0  # the zero above is a measurement, not a constant


@pytest.mark.parametrize("client,up", [(c, up) for c in CLIENTS for up in BODIES[c]])
def test_post_bodies_arrive_whole(rt, caller, client, up):
    size = 300_000  # several frames and more than one flow-control window
    reply = call(rt, caller, client, "http://target.plt.local/upload", method="POST", up=up,
                 size=size)
    assert_ok(reply)
    assert reply["json"]["sha256"] == reply["sent_sha256"]
    if up != "json":
        assert reply["json"]["bytes"] == size
        assert reply["sent_sha256"] == hashlib.sha256(_payload(size)).hexdigest()
    assert reply["sockets"] == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_streamed_5_mb_download(rt, caller, client):
    size = 5 * 1024 * 1024
    reply = call(rt, caller, client, f"http://target.plt.local/download?size={size}",
                 stream="1")
    assert_ok(reply)
    assert reply["bytes"] == size
    assert reply["sha256"] == hashlib.sha256(b"x" * size).hexdigest()
    assert reply["sockets"] == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_unknown_application_is_the_clients_connection_error(rt, caller, client):
    reply = call(rt, caller, client, "http://nope.plt.local/whoami")
    assert_error(reply, UNREACHABLE[client], "WATT_MESH_UNKNOWN_APP")
    assert "'nope'" in reply["error"]
    assert reply["sockets"] == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_read_timeout_is_the_clients_timeout_and_cancels_the_call(rt, caller, client):
    reply = call(rt, caller, client, f"http://{caller}.plt.local/hang", timeout="0.3")
    assert_error(reply, TIMED_OUT[client], "WATT_MESH_TIMEOUT")
    if client == "urllib":
        assert reply["reason"] == "TimeoutError"  # URLError(reason=TimeoutError), as urllib does
    # The abandoned call reached the target as a disconnect.
    assert rt.inject(caller, "GET", "/hang-ended").json() == {"seen": "disconnect"}


@pytest.mark.parametrize("client", CLIENTS)
def test_error_statuses(rt, caller, client):
    reply = call(rt, caller, client, "http://target.plt.local/no-such-route")
    if client == "urllib":  # urllib raises HTTPError for 4xx/5xx, over the mesh too
        assert_error(reply, "urllib.error.HTTPError", "HTTP Error 404: Not Found")
    else:
        assert_ok(reply, status=404)
        assert reply["json"] == {"error": "not found", "path": "/no-such-route"}


@pytest.mark.parametrize("client", ["urllib3", "requests", "aiohttp"])
def test_gzip_responses_are_decoded_like_over_tcp(rt, caller, client):
    reply = call(rt, caller, client, f"http://{caller}.plt.local/gzip")
    assert_ok(reply)
    assert reply["json"] == {"gzip": caller}


@pytest.mark.parametrize("client", SYNC_CLIENTS)
def test_sync_client_on_the_event_loop_thread_fails_clearly(rt, client):
    reply = call(rt, "callsub", client, "http://target.plt.local/whoami", thread="loop")
    assert_error(reply, UNREACHABLE[client], "WATT_MESH_SYNC_IN_LOOP")
