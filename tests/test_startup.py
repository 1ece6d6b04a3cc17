"""Start-up and shutdown: fallback to processes, failures that say what happened, lifespan."""

from __future__ import annotations

import os

import httpx
import pytest
from loguru import logger
from support import APPS, app_config

from watt import ApplicationStartError, ConfigError


def test_fastapi_under_auto_runs_in_a_process(watt_runtime):
    rt = watt_runtime({"applications": [app_config("api", "fastapi_app")]})
    info = httpx.get(rt.url + "/whoami", timeout=30).json()
    assert info["app"] == "fastapi" and info["pid"] != os.getpid()
    assert [a["isolation"] for a in rt.applications()] == ["process"]


def test_auto_falls_back_to_a_process_when_an_import_refuses_subinterpreters(watt_runtime):
    # Generic ASGI kind: nothing says "process" up front, the refused import does.
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    try:
        rt = watt_runtime({"applications": [app_config("api", "fastapi_app", kind="asgi")]})
    finally:
        logger.remove(sink)
    info = httpx.get(rt.url + "/whoami", timeout=30).json()
    assert info["app"] == "fastapi"
    assert info["pid"] != os.getpid()
    fallback = [line for line in lines if "cannot load in a subinterpreter" in line]
    assert len(fallback) == 1 and "'api'" in fallback[0] and "pydantic_core" in fallback[0]


def test_subinterpreter_isolation_is_not_silently_changed(watt_runtime):
    config = {"applications": [app_config("api", "fastapi_app", isolation="subinterpreter")]}
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime(config)
    assert info.value.app_id == "api"
    assert "does not support loading in subinterpreters" in str(info.value)


def test_import_error_shows_the_application_traceback(watt_runtime, tmp_path):
    config_file = tmp_path / "watt.json"
    config_file.write_text(
        '{\n  "applications": [\n    {\n      "id": "broken",\n'
        f'      "path": "{APPS / "broken_import"}",\n      "app": "main:app"\n    }}\n  ]\n}}\n')
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime(str(config_file))
    err = info.value
    assert err.code == "WATT_APP_IMPORT_FAILED"
    assert err.app_id == "broken"
    assert (err.file, err.line) == (str(config_file), 4)
    assert "this_module_does_not_exist" in str(err)
    assert f'{APPS / "broken_import" / "main.py"}", line 5' in err.detail
    assert "watt/worker" not in err.detail and "importlib" not in err.detail


def test_missing_module_names_what_was_looked_for(watt_runtime):
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [app_config("x", app="nomodule:app")]})
    assert info.value.code == "WATT_APP_IMPORT_FAILED"
    assert "module 'nomodule' not found" in str(info.value)


def test_lifespan_failure_stops_the_start(watt_runtime):
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [app_config("db", "broken_lifespan")]})
    assert info.value.code == "WATT_APP_LIFESPAN_FAILED"
    assert "database unreachable" in str(info.value)


def test_failure_of_one_application_stops_the_others(watt_runtime):
    config = {"entrypoint": "ok", "applications": [
        app_config("ok"), app_config("db", "broken_lifespan")]}
    with pytest.raises(ApplicationStartError):
        watt_runtime(config)
    # Nothing is left listening or running: a new runtime starts cleanly.
    rt = watt_runtime({"applications": [app_config("ok")]})
    assert httpx.get(rt.url + "/whoami", timeout=30).status_code == 200


def test_lifespan_shutdown_runs_in_every_worker(watt_runtime, tmp_path):
    marker = tmp_path / "shutdown.txt"
    env = {"SHUTDOWN_FILE": str(marker)}
    rt = watt_runtime({"entrypoint": "a", "applications": [
        app_config("a", env=env), app_config("b", workers=2, env=env),
        app_config("c", isolation="process", env=env)]})
    assert httpx.get(rt.url + "/whoami", timeout=30).status_code == 200
    rt.stop()
    assert sorted(marker.read_text().split("\n")[:-1]) == [
        "a shutdown", "b shutdown", "b shutdown", "c shutdown"]


def test_config_typo_is_reported_with_its_key(watt_runtime):
    config = {"applications": [dict(app_config("a"), workrs=2)]}
    with pytest.raises(ConfigError) as info:
        watt_runtime(config)
    assert info.value.code == "WATT_CONFIG_UNKNOWN_KEY"
    assert "workrs" in str(info.value)


def test_worker_death_fails_its_request_with_502_not_a_hang(watt_runtime):
    rt = watt_runtime({"restartOnError": False,
                       "applications": [app_config("p", isolation="process")]})
    response = httpx.get(rt.url + "/crash", timeout=30)
    assert response.status_code == 502
    assert response.json()["code"] == "WATT_WORKER_DIED"
    # No worker is left: the entrypoint says so at once.
    again = httpx.get(rt.url + "/whoami", timeout=30)
    assert again.status_code == 503 and again.json()["code"] == "WATT_NO_WORKER"


def test_unknown_kind_lists_the_installed_ones(watt_runtime):
    with pytest.raises(ConfigError) as info:
        watt_runtime({"applications": [app_config("a", kind="rails")]})
    assert info.value.code == "WATT_CAPABILITY_UNKNOWN"
    assert "asgi" in str(info.value) and "starlette" in str(info.value)


def test_autoload_detects_each_folder_and_its_kind(watt_runtime, tmp_path):
    apps = tmp_path / "apps"
    (apps / "front").mkdir(parents=True)
    (apps / "front" / "main.py").write_text(
        "import httpx\n"
        "from starlette.applications import Starlette\n"
        "from starlette.responses import PlainTextResponse\n"
        "from starlette.routing import Route\n\n"
        "async def home(request):\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        reply = await client.get('http://back.plt.local/')\n"
        "    return PlainTextResponse('front+' + reply.text)\n\n"
        "app = Starlette(routes=[Route('/', home)])\n")
    (apps / "back").mkdir()
    (apps / "back" / "app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'back'})\n")
    (apps / "_ignored").mkdir()
    (tmp_path / "watt.json").write_text(
        '{"entrypoint": "front", "server": {"port": 0}, "autoload": {"path": "apps"}}')
    rt = watt_runtime(tmp_path / "watt.json")
    assert httpx.get(rt.url, timeout=30).text == "front+back"
    kinds = {a["id"]: a["kind"] for a in rt.applications()}
    assert kinds == {"front": "starlette", "back": "asgi"}


def test_sync_mesh_call_on_the_loop_thread_is_refused_with_a_code(watt_runtime):
    rt = watt_runtime({"applications": [app_config("a")]})
    reply = rt.inject("a", "GET", "/mesh-sync-in-loop").json()
    assert "WATT_MESH_SYNC_IN_LOOP" in reply["error"]


def test_requests_a_dying_worker_never_took_go_to_another_worker(watt_runtime, tmp_path):
    import _interpqueues
    import concurrent.futures
    import time

    # Forwarded requests (server.direct false); test_direct has the same for connections.
    rt = watt_runtime({"server": {"direct": False},
                       "applications": [app_config("b", workers=2)]})
    workers = rt.runtime.pools["b"].workers
    flag = tmp_path / "go"
    blocking = tmp_path / "go.blocking"
    deadline = time.monotonic() + 20
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        blocked = pool.submit(httpx.get, rt.url + "/block-then-exit",
                              params={"flag": str(flag)}, timeout=30)
        while not (blocking.exists() and blocking.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)  # bounded wait for the app to report it is blocking
        stuck = next(w for w in workers if str(w.interpreter_id) == blocking.read_text())
        alive = next(w for w in workers if w is not stuck)
        others = [pool.submit(httpx.get, rt.url + "/whoami", timeout=30) for _ in range(4)]
        # Wait (bounded) until the stuck worker's queue holds requests it cannot take.
        queue = stuck.channel.transport.send_qid
        while _interpqueues.get_count(queue) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = _interpqueues.get_count(queue)
        flag.touch()
        answers = [f.result() for f in others]
        assert blocked.result().status_code == 502
    assert queued >= 2
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.json()["interpreter"] for a in answers} == {alive.interpreter_id}


def test_a_third_party_capability_registered_by_entry_point_is_used(watt_runtime, tmp_path,
                                                                   monkeypatch):
    import sys

    # A tiny installed distribution: its metadata declares the entry point in the
    # watt.capabilities group, as `pip install` would lay it out.
    site = tmp_path / "site"
    (site / "tiny_cap-1.0.dist-info").mkdir(parents=True)
    (site / "tiny_cap-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tiny-cap\nVersion: 1.0\n")
    (site / "tiny_cap-1.0.dist-info" / "entry_points.txt").write_text(
        "[watt.capabilities]\ntiny = tiny_cap:capability\n")
    (site / "tiny_cap.py").write_text(
        "from watt.capability import Capability\n\n"
        "async def _app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'tiny capability'})\n\n"
        "def load(options):\n"
        "    return _app\n\n"
        "capability = Capability(name='tiny', loader='tiny_cap:load',\n"
        "                        detect=lambda path: {} if path.endswith('tinyapp') else None,\n"
        "                        priority=50)\n")
    monkeypatch.syspath_prepend(str(site))
    folder = tmp_path / "tinyapp"
    folder.mkdir()
    rt = watt_runtime({"applications": [{"id": "t", "path": str(folder)}]})
    assert httpx.get(rt.url, timeout=30).text == "tiny capability"
    assert [a["kind"] for a in rt.applications()] == ["tiny"]
    assert "tiny_cap" in sys.modules  # loaded through its entry point, in this process
