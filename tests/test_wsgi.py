"""WSGI and Flask applications through the WSGI-to-ASGI bridge (capabilities/wsgi.py).

Real runtimes, real sockets on 127.0.0.1.  tests/apps/wsgi_app (plain WSGI,
``threads: 2``) and tests/apps/flask_app (Flask, default threads) answer the
same routes; each runs in a subinterpreter (``auto``) and in a process.
Neither config names a ``kind``: detection picks ``wsgi`` and ``flask``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import socket

import httpx
import pytest
from support import APPS, ROOT, app_config, reset_memory_high_water, status_kb

from capabilities import flask as flask_capability
from capabilities import wsgi as wsgi_capability
from watt import ApplicationStartError
from watt.testing import RuntimeHandle

STACKS = [("wsgi", "auto"), ("wsgi", "process"), ("flask", "auto"), ("flask", "process")]
WSGI = [s for s in STACKS if s[0] == "wsgi"]
BIG = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def runtimes():
    """One runtime per (kind, isolation), started on first use, stopped with the module."""
    started: dict[tuple, RuntimeHandle] = {}

    def get(kind: str, isolation: str) -> RuntimeHandle:
        if (kind, isolation) not in started:
            app = {"id": kind, "path": str(APPS / f"{kind}_app"), "isolation": isolation,
                   "env": {"APP_NAME": kind}}
            if kind == "wsgi":
                app["threads"] = 2
            rt = RuntimeHandle({"entrypoint": kind, "applications": [app, app_config("peer")]})
            rt.kind, rt.isolation = kind, isolation
            started[(kind, isolation)] = rt
        return started[(kind, isolation)]

    yield get
    for rt in started.values():
        rt.stop()


@pytest.fixture
def stack(request, runtimes) -> RuntimeHandle:
    return runtimes(*request.param)


def ids(param) -> str:
    return "-".join(param)


both = pytest.mark.parametrize("stack", STACKS, indirect=True, ids=ids)
wsgi_only = pytest.mark.parametrize("stack", WSGI, indirect=True, ids=ids)


def get(rt, path: str, **kwargs) -> httpx.Response:
    return httpx.get(rt.url + path, timeout=30, **kwargs)


@both
def test_kind_is_detected_and_isolation_applied(stack):
    info = {a["id"]: a for a in stack.applications()}[stack.kind]
    assert info["kind"] == stack.kind  # no `kind` in the config
    env = get(stack, "/env").json()
    if stack.isolation == "auto":
        assert info["isolation"] == "subinterpreter"
        assert env["pid"] == os.getpid() and env["interpreter"] != 0
    else:
        assert info["isolation"] == "process" and env["pid"] != os.getpid()
    assert get(stack, "/").text == f"hello from {stack.kind}"


@both
def test_environ_path_and_query_with_non_ascii(stack):
    headers = [("x-multi", "a"), ("x-multi", "b"), ("x_under", "spoof")]
    env = get(stack, "/env/ünï/x", params={"q": "café", "n": "Ø"}, headers=headers).json()
    assert env["path"] == "/env/ünï/x"  # PATH_INFO is UTF-8 bytes as latin-1 (PEP 3333)
    assert env["query"] == {"q": "café", "n": "Ø"}
    assert env["QUERY_STRING"] == "q=caf%C3%A9&n=%C3%98"
    assert env["HTTP_X_MULTI"] == "a,b"
    assert env["x_under"] is False  # x_under would pose as x-under: dropped
    port = stack.url.rsplit(":", 1)[1]
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", port)
    assert (env["REMOTE_ADDR"], env["SCRIPT_NAME"]) == ("127.0.0.1", "")
    assert (env["SERVER_PROTOCOL"], env["wsgi.url_scheme"]) == ("HTTP/1.1", "http")
    assert env["errors_is_stderr"] is True


@both
def test_post_form_and_json(stack):
    form = httpx.post(stack.url + "/form", data={"a": "1", "b": ["x", "é"]}, timeout=30)
    assert form.json() == {"a": ["1"], "b": ["x", "é"]}
    reply = httpx.post(stack.url + "/json", json={"list": [1, 2], "s": "ü"}, timeout=30)
    assert reply.json() == {"got": {"list": [1, 2], "s": "ü"}, "type": "application/json"}


@both
def test_multiple_set_cookie_headers(stack):
    response = get(stack, "/cookies")
    cookies = [c.split(";")[0] for c in response.headers.get_list("set-cookie")]
    assert cookies == ["a=1", "b=2"]
    assert response.json() == {"ok": True}


@both
def test_unknown_route_is_the_apps_own_404(stack):
    response = get(stack, "/nope")
    assert response.status_code == 404
    assert ("Not Found" if stack.kind == "flask" else "not found") in response.text


@both
def test_exception_is_a_500_and_the_runtime_keeps_serving(stack):
    response = get(stack, "/boom")
    assert response.status_code == 500
    assert "secret-token" not in response.text
    assert get(stack, "/").status_code == 200
    assert get(stack, "/boom").status_code == 500  # the pool thread survived it too


def _memory_baseline(rt) -> tuple[int, int]:
    """RSS of the app's process (this one for a subinterpreter) and of this one, peaks reset."""
    return get(rt, "/mem/reset").json()["rss"], reset_memory_high_water()


def _memory_growth_mb(rt, baseline: tuple[int, int]) -> tuple[float, float]:
    app = (get(rt, "/mem").json()["hwm"] - baseline[0]) / 1024
    return app, (status_kb("VmHWM") - baseline[1]) / 1024


@both
def test_50_mb_upload_is_streamed_with_bounded_memory(stack):
    chunk = os.urandom(256 * 1024)
    baseline = _memory_baseline(stack)

    def body():  # no Content-Length: a chunked upload, read as it arrives
        for _ in range(BIG // len(chunk)):
            yield chunk

    reply = httpx.post(stack.url + "/upload", content=body(), timeout=120).json()
    app, here = _memory_growth_mb(stack, baseline)
    expected = hashlib.sha256()
    for piece in body():
        expected.update(piece)
    assert reply == {"bytes": BIG, "sha256": expected.hexdigest()}
    assert app < 10 and here < 10, f"memory grew by {app:.0f}/{here:.0f} MB for 50 MB"


@both
def test_50_mb_download_is_streamed_with_bounded_memory(stack):
    baseline = _memory_baseline(stack)
    received = 0
    with httpx.stream("GET", stack.url + f"/download?size={BIG}", timeout=120) as response:
        assert "content-length" not in response.headers  # streamed, not buffered
        for piece in response.iter_raw():
            received += len(piece)
    assert received == BIG
    app, here = _memory_growth_mb(stack, baseline)
    assert app < 10 and here < 10, f"memory grew by {app:.0f}/{here:.0f} MB for 50 MB"


@both
def test_threads_bound_how_many_requests_run_at_once(stack):
    # Each /slow request waits (up to 1 s) for a third one to be running beside
    # it, and reports the most it saw.  threads: 2 (wsgi) must cap that at 2;
    # the default of 10 (flask) lets all three in.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: get(stack, "/slow").json()["max"], range(3)))
    assert max(replies) == (2 if stack.kind == "wsgi" else 3)


@both
def test_mesh_call_from_the_app_to_another_app(stack):
    # urllib.request (wsgi) / requests (flask) on a pool thread; peer echoes its headers
    reply = get(stack, "/mesh", headers={"x-request-id": "req-42"}).json()
    assert reply["status"] == 200 and reply["peer"]["host"] == "peer.plt.local"
    assert reply["peer"]["x-request-id"] == "req-42"  # the request's context reached the thread


@both
def test_reached_through_the_mesh_from_another_app(stack):
    target = f"{stack.kind}.plt.local"
    reply = stack.inject("peer", "GET", f"/mesh?target={target}&path=/env").json()
    assert reply["status"] == 200 and reply["sockets"] == 0
    env = httpx.Response(200, content=reply["body"]).json()
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (target, target, "80")


@wsgi_only
def test_start_response_with_exc_info_replaces_the_unsent_response(stack):
    response = get(stack, "/exc-info")
    assert (response.status_code, response.text) == (503, "replaced")
    assert "x-dropped" not in response.headers


@wsgi_only
def test_client_leaving_stops_an_endless_response(stack):
    with httpx.stream("GET", stack.url + "/endless", timeout=30) as response:
        assert next(response.iter_lines()) == "tick"
    # Leaving the block closed the connection: the bridge's next send fails
    # inside the iteration and the app's close() runs.
    events = get(stack, "/events", params={"prefix": "endless"}).json()
    assert len(events) == 1 and events[0].startswith("endless closed after")


@wsgi_only
def test_upload_cut_short_is_an_oserror_in_wsgi_input(stack):
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
                     + b"u" * 300_000)
    events = get(stack, "/events", params={"prefix": "upload cut"}).json()
    assert len(events) == 1 and events[0].endswith("ClientDisconnected")
    assert 0 < int(events[0].split()[3]) <= 300_000


def test_an_async_app_under_kind_wsgi_is_refused_with_a_hint(watt_runtime):
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [app_config("a", kind="wsgi")]})
    assert info.value.code == "WATT_APP_IMPORT_FAILED"
    assert 'set `kind` to "asgi"' in str(info.value)


# -- detection: reads files, never imports them -------------------------------------
NEVER_IMPORTED = "raise SystemExit('detection must not import me')\n"


def detect_both(tmp_path, files: dict[str, str]) -> tuple:
    for name, text in files.items():
        (tmp_path / name).write_text(NEVER_IMPORTED + text)
    return wsgi_capability.detect(str(tmp_path)), flask_capability.detect(str(tmp_path))


@pytest.mark.parametrize(("files", "wsgi", "flask"), [
    ({"wsgi.py": "application = make()\n"}, "wsgi:application", None),
    ({"main.py": "def app(environ, start_response):\n    pass\n"}, "main:app", None),
    ({"app.py": "def application(environ, start_response):\n    pass\n"},
     "app:application", None),
    ({"app.py": "from flask import Flask\napp = Flask(__name__)\n"}, None, "app:app"),
    ({"main.py": "import flask\n\ndef create_app():\n    return flask.Flask('x')\n"},
     None, "main:create_app()"),
    ({"main.py": "from starlette.applications import Starlette\napp = Starlette()\n"},
     None, None),
    ({"main.py": "async def app(scope, receive, send):\n    pass\n"}, None, None),
    ({"main.py": "# not flask, just a mention\napp = object()\n"}, None, None),
], ids=["wsgi.py", "main-function", "app-function", "flask", "flask-factory", "starlette",
        "asgi", "mention"])
def test_detection(tmp_path, files, wsgi, flask):
    found = detect_both(tmp_path, files)
    assert found == ({"app": wsgi} if wsgi else None, {"app": flask} if flask else None)


def test_default_threads_is_10():
    bridge = wsgi_capability.WSGIBridge(lambda environ, start_response: [])
    try:
        assert bridge.threads == 10 and bridge.executor._max_workers == 10
    finally:
        bridge.executor.shutdown()


def test_the_flask_example(watt_runtime):
    rt = watt_runtime(ROOT / "examples" / "flask" / "watt.json")
    assert "Hello from Flask" in httpx.get(rt.url, timeout=30).text
    assert httpx.get(rt.url + "/api/info", timeout=30).json()["framework"] == "flask"
    reply = httpx.get(rt.url + "/greet", params={"name": "Ada"}, timeout=30).json()
    assert reply == {"via": "mesh", "greeter": {"greeting": "Hello, Ada!", "from": "greeter"}}
    assert {a["id"]: a["kind"] for a in rt.applications()} == {"web": "flask", "greeter": "wsgi"}
