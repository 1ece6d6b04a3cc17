"""The management API and the ``watt`` commands that use it, against real runtimes.

Every runtime here gets a private, short ``XDG_RUNTIME_DIR`` so that runtimes
started by other tests (or people) on this machine are never seen.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from support import ROOT, WattProcess, app_config, wait_for

from watt.channel.message import Response
from watt.errors import WattError
from watt.management import ManagementApp, ensure_private_dir, wait_gone


def _private_dir() -> Path:
    # Not tmp_path: a unix socket path must stay under 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="wt-", dir="/tmp"))
    path.chmod(0o700)
    return path


@pytest.fixture(scope="module")
def xdg():
    path = _private_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    config = tmp_path_factory.mktemp("mgmt") / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "entrypoint": "web", "applications": [
        app_config("web", workers=2), app_config("api")]}))
    return config


def _start(config_file: Path, xdg: Path) -> SimpleNamespace:
    proc = WattProcess("-c", str(config_file), env={"XDG_RUNTIME_DIR": str(xdg)})
    try:
        url = proc.wait_url()
    except BaseException:
        proc.kill()
        raise
    return SimpleNamespace(proc=proc, url=url, pid=proc.proc.pid,
                           socket=xdg / "watt" / f"{proc.proc.pid}.sock")


@pytest.fixture(scope="module")
def runtime(config_file, xdg):
    rt = _start(config_file, xdg)
    yield rt
    if rt.proc.proc.poll() is None:
        rt.proc.proc.send_signal(signal.SIGTERM)
        try:
            rt.proc.wait(timeout=60)
        finally:
            rt.proc.kill()


def watt(*args: str, xdg: Path, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watt.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, input=input,
                          env=dict(os.environ, XDG_RUNTIME_DIR=str(xdg)))


def applications(rt, xdg) -> dict[str, dict]:
    out = watt("applications", str(rt.pid), "--json", xdg=xdg)
    assert out.returncode == 0, out.stderr
    return {app["id"]: app for app in json.loads(out.stdout)}


# -- the commands against one runtime ------------------------------------------------------
def test_ps_lists_the_runtime(runtime, xdg):
    out = watt("ps", "--json", xdg=xdg)
    assert out.returncode == 0, out.stderr
    [info] = json.loads(out.stdout)
    assert info["pid"] == runtime.pid and info["url"] == runtime.url
    assert info["cwd"] == str(ROOT) and info["applications"] == ["api", "web"]
    assert info["state"] == "running" and info["uptime"] > 0
    table = watt("ps", xdg=xdg)
    header, row = table.stdout.splitlines()
    assert header.split() == ["PID", "UPTIME", "URL", "CWD", "APPS"]
    assert row.split()[0] == str(runtime.pid) and runtime.url in row and "api,web" in row


def test_applications_shows_both_apps_and_their_workers(runtime, xdg):
    apps = applications(runtime, xdg)
    assert sorted(apps) == ["api", "web"]
    assert [w["status"] for w in apps["web"]["workers"]] == ["ready", "ready"]
    assert len(apps["api"]["workers"]) == 1
    assert apps["web"]["kind"] == "asgi" and apps["web"]["isolation"] == "subinterpreter"
    out = watt("applications", xdg=xdg)  # the only runtime: no PID needed
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["APP", "KIND", "ISOLATION", "STATUS", "HEALTH", "RESTARTS",
                                "WORKERS"]
    web = next(line for line in lines if line.startswith("web "))
    assert web.split()[3:5] == ["ready", "healthy"] and web.count("ready") == 3
    assert "subinterpreter" in web


def test_inject_returns_the_application_answer(runtime, xdg):
    out = watt("inject", str(runtime.pid), "api", "/whoami?x=1", xdg=xdg)
    assert out.returncode == 0, out.stderr
    status, body = out.stdout.split("\n\n", 1)
    assert status == "HTTP/1.1 200 OK"
    whoami = json.loads(body)
    assert whoami["app"] == "api" and whoami["pid"] == runtime.pid
    assert whoami["query"] == "x=1" and whoami["interpreter"] > 0

    out = watt("inject", "api", "-H", "X-Test: yes", "-i", "/headers", xdg=xdg)
    head, body = out.stdout.split("\n\n", 1)
    assert "content-type: application/json" in head.splitlines()
    assert json.loads(body)["x-test"] == "yes"

    out = watt("inject", "api", "-d", "@-", "/upload", xdg=xdg, input="hello")
    upload = json.loads(out.stdout.split("\n\n", 1)[1])
    assert upload == {"bytes": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}

    missing = watt("inject", "api", "/no-such-route", xdg=xdg)
    assert missing.returncode == 1 and missing.stdout.startswith("HTTP/1.1 404")
    unknown = watt("inject", "nope", "/", xdg=xdg)
    assert unknown.returncode == 1
    assert "WATT_MANAGEMENT_UNKNOWN_APP" in unknown.stderr and "Traceback" not in unknown.stderr
    usage = watt("inject", "api", "-H", "no-colon", "/", xdg=xdg)
    assert usage.returncode == 2


def test_restart_replaces_the_workers_while_requests_keep_succeeding(runtime, xdg):
    before = applications(runtime, xdg)["web"]
    old = {w["interpreter"] for w in before["workers"]}
    results: list = []
    done = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                try:
                    results.append(client.get(runtime.url + "/whoami").status_code)
                except httpx.HTTPError as exc:
                    results.append(exc)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_for(lambda: len(results) >= 5)
        out = watt("restart", str(runtime.pid), "web", xdg=xdg)
        count = len(results)
        wait_for(lambda: len(results) >= count + 5)  # and serving after it
    finally:
        done.set()
        thread.join()
    assert out.returncode == 0, out.stderr
    assert "restarted web" in out.stdout
    assert results and all(r == 200 for r in results), [r for r in results if r != 200][:3]
    after = applications(runtime, xdg)["web"]
    new = {w["interpreter"] for w in after["workers"]}
    assert len(new) == 2 and not new & old
    assert after["restarts"] > before["restarts"]
    assert [w["status"] for w in after["workers"]] == ["ready", "ready"]
    assert httpx.get(runtime.url + "/whoami", timeout=30).json()["interpreter"] in new


def test_the_api_over_the_unix_socket(runtime):
    transport = httpx.HTTPTransport(uds=str(runtime.socket))
    with httpx.Client(transport=transport, base_url="http://watt", timeout=60) as client:
        info = client.get("/api/v1/metadata").json()
        assert info["pid"] == runtime.pid and info["entrypoint"] == "web"
        apps = client.get("/api/v1/applications").json()
        assert sorted(a["id"] for a in apps) == ["api", "web"]
        reply = client.post("/api/v1/applications/api/inject", json={
            "method": "POST", "path": "/upload", "headers": {"x-a": "1"}, "body": "abc"})
        assert reply.status_code == 200
        answer = reply.json()
        assert answer["status"] == 200 and answer["base64"] is False
        assert json.loads(answer["body"])["bytes"] == 3
        assert ["content-type", "application/json"] in answer["headers"]
        restarted = client.post("/api/v1/applications/api/restart")
        assert restarted.status_code == 200 and restarted.json()["id"] == "api"
        for method, path, status, code in [
                ("POST", "/api/v1/applications/nope/inject", 404, "WATT_MANAGEMENT_UNKNOWN_APP"),
                ("POST", "/api/v1/applications/nope/restart", 404,
                 "WATT_MANAGEMENT_UNKNOWN_APP"),
                ("GET", "/api/v1/nothing", 404, "WATT_MANAGEMENT_NOT_FOUND"),
                ("GET", "/api/v1/stop", 405, "WATT_MANAGEMENT_METHOD_NOT_ALLOWED")]:
            reply = client.request(method, path, json={})
            assert reply.status_code == status, (path, reply.text)
            assert reply.json()["code"] == code and reply.json()["message"]
        bad = client.post("/api/v1/applications/api/inject", content=b"{not json")
        assert bad.status_code == 400 and "not JSON" in bad.json()["message"]


def test_the_socket_is_private_to_this_user(runtime):
    folder = os.lstat(runtime.socket.parent)
    assert stat.S_ISDIR(folder.st_mode) and stat.S_IMODE(folder.st_mode) == 0o700
    assert folder.st_uid == os.getuid()
    sock = os.lstat(runtime.socket)
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o600
    assert sock.st_uid == os.getuid()


def test_ps_removes_a_stale_socket(runtime, xdg):
    stale = xdg / "watt" / "999999999.sock"
    with socket.socket(socket.AF_UNIX) as sock:  # bound, never listening: like a dead runtime
        sock.bind(str(stale))
    assert stale.exists()
    out = watt("ps", "--json", xdg=xdg)
    assert out.returncode == 0, out.stderr
    assert [r["pid"] for r in json.loads(out.stdout)] == [runtime.pid]
    assert not stale.exists()


def test_with_two_runtimes_a_pid_is_needed_and_stop_ends_one(runtime, config_file, xdg):
    second = _start(config_file, xdg)
    try:
        out = watt("applications", xdg=xdg)
        assert out.returncode == 3
        assert "WATT_MANAGEMENT_AMBIGUOUS" in out.stderr
        assert str(runtime.pid) in out.stderr and str(second.pid) in out.stderr
        assert "Traceback" not in out.stderr
        listed = json.loads(watt("ps", "--json", xdg=xdg).stdout)
        assert sorted(r["pid"] for r in listed) == sorted([runtime.pid, second.pid])

        assert second.socket.exists()
        out = watt("stop", str(second.pid), xdg=xdg)
        assert out.returncode == 0, out.stderr
        assert f"stopped {second.pid}" in out.stdout
        assert second.proc.proc.poll() is not None  # gone before `watt stop` returned
        assert second.proc.wait(timeout=5) == 0
        assert not second.socket.exists()
        assert "Watt is stopping" in second.proc.output()
        listed = json.loads(watt("ps", "--json", xdg=xdg).stdout)
        assert [r["pid"] for r in listed] == [runtime.pid]
    finally:
        second.proc.kill()


# -- no runtime, unsafe folders ----------------------------------------------------------
def test_without_a_runtime_the_commands_say_so():
    empty = _private_dir()
    try:
        for args in (["applications"], ["inject", "web", "/"], ["restart"], ["stop"],
                     ["applications", "12345"]):
            out = watt(*args, xdg=empty)
            assert out.returncode == 3, (args, out.stderr)
            assert "WATT_MANAGEMENT_NO_RUNTIME" in out.stderr and "Traceback" not in out.stderr
        out = watt("ps", xdg=empty)
        assert out.returncode == 0 and "no Watt runtime is running" in out.stderr
    finally:
        shutil.rmtree(empty)


def test_an_unsafe_socket_folder_is_refused(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(WattError, match="0755") as info:
        ensure_private_dir(loose)
    assert info.value.code == "WATT_MANAGEMENT_UNSAFE_DIR"
    target = tmp_path / "mine"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(WattError, match="not a folder"):
        ensure_private_dir(tmp_path / "link")
    assert ensure_private_dir(target) == target
    created = ensure_private_dir(tmp_path / "new")
    assert stat.S_IMODE(created.stat().st_mode) == 0o700

    xdg = _private_dir()
    try:
        (xdg / "watt").mkdir(mode=0o700)
        (xdg / "watt").chmod(0o777)
        out = watt("ps", xdg=xdg)
        assert out.returncode == 3 and "WATT_MANAGEMENT_UNSAFE_DIR" in out.stderr
    finally:
        shutil.rmtree(xdg)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_socket_folder_of_another_user_is_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 12345, -1)
    with pytest.raises(WattError, match="owned by uid 12345"):
        ensure_private_dir(other)


def test_wait_gone_counts_an_unreaped_child_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert wait_gone(child.pid, 30)  # a zombie: exited, not yet reaped
        assert child.poll() == 0
    finally:
        child.kill()
        child.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not wait_gone(sleeper.pid, 0.2)
    finally:
        sleeper.kill()
        sleeper.wait()


# -- the ASGI app alone, over a fake runtime ---------------------------------------------
class FakePool:
    id = "a"

    def info(self) -> dict:
        raise RuntimeError("a bug")


class FakeRuntime:
    config = SimpleNamespace(graceful_shutdown=SimpleNamespace(runtime=7000), entrypoint="a")
    pools = {"a": FakePool()}
    url = None

    def info(self) -> dict:
        return {"pid": 1}

    async def inject(self, app_id, method, path, *, headers, body):
        if app_id != "a":
            raise WattError("no application 'x'", code="WATT_MESH_UNKNOWN_APP")
        return Response(201, [(b"x-method", method.encode())], b"\xff" + body)


def _asgi(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_binary_bodies_travel_as_base64_and_bugs_become_500():
    app = ManagementApp(FakeRuntime())
    reply = _asgi(app, "POST", "/api/v1/applications/a/inject",
                  json={"method": "put", "path": "/", "body": base64.b64encode(b"\x00").decode(),
                        "base64": True})
    answer = reply.json()
    assert answer["status"] == 201 and answer["base64"] is True
    assert base64.b64decode(answer["body"]) == b"\xff\x00"
    assert answer["headers"] == [["x-method", "PUT"]]
    broken = _asgi(app, "GET", "/api/v1/applications")
    assert broken.status_code == 500
    assert broken.json() == {"code": "WATT_ERROR", "message": "RuntimeError: a bug"}
    for payload, words in [({"path": "nope"}, "start with '/'"), ([1], "must be an object"),
                           ({"headers": [["a"]]}, "headers"),
                           ({"body": "!!", "base64": True}, "base64")]:
        bad = _asgi(app, "POST", "/api/v1/applications/a/inject", json=payload)
        assert bad.status_code == 400 and words in bad.json()["message"], bad.text


def test_stop_answers_first_then_stops():
    events: list[str] = []
    app = ManagementApp(FakeRuntime(), stop_process=lambda: events.append("stop"))
    reply = _asgi(app, "POST", "/api/v1/stop")
    assert reply.status_code == 202 and reply.json()["timeout"] == 7.0
    assert events == ["stop"]


@pytest.mark.skipif(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL,
                    reason="this process handles SIGTERM")
def test_stop_without_a_sigterm_handler_stops_only_the_runtime():
    """An embedded runtime (no ``watt.run``) must not kill its host process."""
    runtime = FakeRuntime()
    stopped: list[bool] = []

    async def stop() -> None:
        stopped.append(True)

    runtime.stop = stop
    app = ManagementApp(runtime)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
            reply = await client.post("/api/v1/stop")
        await asyncio.gather(*app._tasks)
        return reply

    assert asyncio.run(go()).status_code == 202
    assert stopped == [True]


def test_the_api_over_tcp_needs_the_bearer_token(watt_runtime):
    token = "t0ken-" + "x" * 26
    rt = watt_runtime({"applications": [app_config("a")], "managementApi": {
        "hostname": "127.0.0.1", "port": 0, "token": token}})
    base = rt.runtime.management.tcp_url
    assert base and base.startswith("http://127.0.0.1:")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": token}):
        reply = httpx.get(f"{base}/api/v1/metadata", headers=headers)
        assert reply.status_code == 401, headers
        assert reply.json()["code"] == "WATT_MANAGEMENT_UNAUTHORIZED"
    reply = httpx.get(f"{base}/api/v1/applications",
                      headers={"authorization": f"Bearer {token}"})
    assert reply.status_code == 200 and [a["id"] for a in reply.json()] == ["a"]
    # The unix socket is served as before, without a token.
    assert rt.runtime.management.path.exists()


def test_a_short_management_token_is_a_config_error():
    from watt import load_config

    with pytest.raises(WattError) as info:
        load_config({"applications": [app_config("a")], "managementApi": {
            "hostname": "127.0.0.1", "token": "short"}})
    assert info.value.code.startswith("WATT_CONFIG")
    assert "managementApi.token" in str(info.value)
