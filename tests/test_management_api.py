"""The management API's endpoints, ``watt env``, ``watt completion``, the start-up
table and the socket's permissions, against one real runtime started as
``watt start`` (a subinterpreter entrypoint with two workers and a process
worker application).

The runtime's ``XDG_RUNTIME_DIR`` is mode 0711 (others may pass through, not
list), so that only Watt's own folder (0700) and socket (0600) keep another
user out: the permission test checks exactly those.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from support import ROOT, WattProcess, app_config, wait_for

import watt
from watt.management.endpoints import mask_environment

NOBODY = 65534
PROCESS_ENV = {"WATT_TEST_FROM_PROCESS": "yes", "WATT_TEST_SECRET_KEY": "hunter2"}
APP_ENV = {"API_TOKEN": "t0ps3cret", "DATABASE_URL": "postgres://user:pw123@db:5432/shop",
           "PLAIN": "visible value"}


@pytest.fixture(scope="module")
def xdg():
    path = Path(tempfile.mkdtemp(prefix="wa-", dir="/tmp"))  # short: a socket path < 108 bytes
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, xdg):
    config = tmp_path_factory.mktemp("mgmt-api") / "watt.json"
    config.write_text(json.dumps({
        "server": {"port": 0}, "entrypoint": "web",
        "health": {"interval": 200},  # reports every 200 ms; the 30 s grace keeps them all
        "applications": [app_config("web", workers=2, env=APP_ENV),
                         app_config("proc", isolation="process")]}))
    proc = WattProcess("-c", str(config), env=dict(PROCESS_ENV, XDG_RUNTIME_DIR=str(xdg)))
    try:
        url = proc.wait_url()
        # The table follows the URL line: wait until its last row (the entrypoint's).
        wait_for(lambda: any(line.startswith("web ") for line in proc.stdout))
    except BaseException:
        proc.kill()
        raise
    rt = SimpleNamespace(proc=proc, url=url, pid=proc.proc.pid, config=config,
                         socket=xdg / "watt" / f"{proc.proc.pid}.sock")
    yield rt
    proc.proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()


@pytest.fixture
def api(runtime):
    transport = httpx.HTTPTransport(uds=str(runtime.socket))
    with httpx.Client(transport=transport, base_url="http://watt/api/v1", timeout=60) as client:
        yield client


def watt_cli(*args: str, xdg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watt.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, XDG_RUNTIME_DIR=str(xdg)))


# -- the start-up table --------------------------------------------------------------------
def test_watt_start_ends_its_start_up_with_a_table(runtime):
    lines = [line.rstrip("\n") for line in runtime.proc.stdout]
    running = next(i for i, line in enumerate(lines) if "running at" in line)
    header, *rows = lines[running + 1:running + 4]  # written at once, with the URL line
    assert header.split() == ["APP", "KIND", "ISOLATION", "WORKERS", "START", "URL"]
    by_app = {row.split()[0]: row.split() for row in rows}
    assert sorted(by_app) == ["proc", "web"]
    web, proc = by_app["web"], by_app["proc"]
    assert web[1:4] == ["asgi", "subinterpreter", "2"] and web[-1] == runtime.url
    assert proc[1:4] == ["asgi", "process", "1"] and proc[-1] == "http://proc.plt.local"
    for row in (web, proc):  # "183 ms" or "1.2 s"
        assert row[5] in ("ms", "s") and float(row[4]) > 0, row
    assert [row.split()[0] for row in rows] == ["proc", "web"]  # start order: entrypoint last


# -- GET /metadata, /applications, /applications/{id}, /applications/{id}/health ---------
def test_metadata_describes_the_process(runtime, xdg):
    out = watt_cli("ps", "--json", xdg=xdg)
    assert out.returncode == 0, out.stderr
    [meta] = json.loads(out.stdout)
    assert meta["pid"] == runtime.pid and meta["url"] == runtime.url
    assert meta["argv"][-2:] == ["-c", str(runtime.config)]
    assert meta["pythonVersion"] == platform.python_version()
    assert meta["wattVersion"] == watt.__version__ and meta["executable"] == sys.executable
    assert meta["file"] == str(runtime.config) and meta["entrypoint"] == "web"
    assert meta["applications"] == ["proc", "web"] and meta["applicationsCount"] == 2
    assert meta["socket"] == str(runtime.socket) and meta["state"] == "running"
    started = datetime.datetime.fromisoformat(meta["startedAt"])
    age = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    assert meta["uptime"] - 5 < age < meta["uptime"] + 5


def test_applications_and_one_application(runtime, api):
    apps = {a["id"]: a for a in api.get("/applications").json()}
    assert sorted(apps) == ["proc", "web"]
    web = api.get("/applications/web").json()
    assert web == apps["web"] | {"workers": web["workers"]}  # the same object
    assert web["entrypoint"] is True and web["url"] == runtime.url and web["status"] == "ready"
    assert web["healthy"] is True and apps["proc"]["healthy"] is True
    assert web["isolation"] == "subinterpreter" and len(web["workers"]) == 2
    assert web["startDuration"] > 0 and web["path"].endswith("tests/apps/basic")
    proc = apps["proc"]
    assert proc["entrypoint"] is False and proc["url"] == "http://proc.plt.local"
    assert proc["isolation"] == "process" and proc["workers"][0]["pid"] != runtime.pid


def test_health_reports_each_worker_then_counts_its_restart(runtime, api, xdg):
    def reported(app_id: str) -> dict | None:
        health = api.get(f"/applications/{app_id}/health").json()
        return health if all(w["lastReportAge"] is not None for w in health["workers"]) \
            else None

    wait_for(lambda: reported("web") and reported("proc"))
    web, proc = reported("web"), reported("proc")
    assert web["healthy"] is True and web["status"] == "ready"
    assert web["checks"]["interval"] == 200 and web["checks"]["enabled"] is True
    assert [w["worker"] for w in web["workers"]] == [0, 1]
    for worker in web["workers"] + proc["workers"]:
        assert worker["healthy"] is True and worker["reason"] is None
        assert worker["status"] == "ready" and 0 <= worker["elu"] <= 1
        assert 0 <= worker["lastReportAge"] < 5 and worker["uptime"] > 0
        assert worker["unhealthyChecks"] == 0
    assert all(w["memory"] is None for w in web["workers"])  # not measurable apart
    assert proc["workers"][0]["memory"] > 1_000_000  # a whole process: resident bytes
    before = {w["worker"]: w["restarts"] for w in proc["workers"]}

    out = watt_cli("restart", str(runtime.pid), "proc", xdg=xdg)
    assert out.returncode == 0, out.stderr
    after = api.get("/applications/proc/health").json()
    assert after["restarts"] == proc["restarts"] + 1
    assert {w["worker"]: w["restarts"] for w in after["workers"]} == {
        index: count + 1 for index, count in before.items()}
    assert after["workers"][0]["pid"] != proc["workers"][0]["pid"]


def test_unknown_ids_wrong_methods_and_paths_answer_with_codes(api):
    for method, path in [("GET", "/applications/nope"), ("GET", "/applications/nope/health"),
                         ("GET", "/applications/nope/env"),
                         ("POST", "/applications/nope/restart"),
                         ("POST", "/applications/nope/inject")]:
        reply = api.request(method, path)
        assert reply.status_code == 404, (path, reply.text)
        assert reply.json()["code"] == "WATT_MANAGEMENT_UNKNOWN_APP"
        assert "proc, web" in reply.json()["message"]
    wrong = api.post("/applications/web")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
    assert wrong.json()["code"] == "WATT_MANAGEMENT_METHOD_NOT_ALLOWED"
    missing = api.get("/applications/web/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == "WATT_MANAGEMENT_NOT_FOUND"
    bad = api.post("/applications/web/inject", json={"path": "/", "header": {}})
    assert bad.status_code == 400 and "unknown key(s) header" in bad.json()["message"]
    bad = api.post("/applications/web/inject", json={"headers": {"bad name": "x"}})
    assert bad.status_code == 400 and "'bad name'" in bad.json()["message"]


# -- GET /applications/{id}/env and `watt env` ---------------------------------------------
def _environ_of(runtime, xdg, app_id: str) -> dict:
    """What the application's own ``os.environ`` holds, asked of the application."""
    out = watt_cli("inject", str(runtime.pid), app_id, "/environ", xdg=xdg)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.split("\n\n", 1)[1])


@pytest.mark.parametrize("app_id", ["web", "proc"])
def test_watt_env_is_what_the_application_sees_with_secrets_masked(runtime, xdg, app_id):
    args = ["env", str(runtime.pid)] + ([app_id] if app_id != "web" else [])  # web: default
    out = watt_cli(*args, xdg=xdg)
    assert out.returncode == 0, out.stderr
    shown = dict(line.split("=", 1) for line in out.stdout.splitlines())
    real = _environ_of(runtime, xdg, app_id)
    assert sorted(shown) == sorted(real)  # no variable missing, none invented
    answer = json.loads(watt_cli("env", str(runtime.pid), app_id, "--json", xdg=xdg).stdout)
    assert answer["id"] == app_id and answer["env"] == shown
    for name in shown:
        if name in answer["masked"]:
            assert shown[name] != real[name] and "****" in shown[name], name
        else:
            assert shown[name] == real[name], name
    assert real["WATT_TEST_FROM_PROCESS"] == shown["WATT_TEST_FROM_PROCESS"] == "yes"
    assert shown["WATT_TEST_SECRET_KEY"] == "****" and real["WATT_TEST_SECRET_KEY"] == "hunter2"
    assert "hunter2" not in out.stdout
    if app_id == "web":
        assert answer["config"] == ["API_TOKEN", "APP_NAME", "DATABASE_URL", "PLAIN"]
        assert shown["API_TOKEN"] == "****" and shown["PLAIN"] == "visible value"
        assert shown["DATABASE_URL"] == "postgres://user:****@db:5432/shop"
        assert "t0ps3cret" not in out.stdout and "pw123" not in out.stdout
    else:
        assert "API_TOKEN" not in shown and shown["APP_NAME"] == "proc"


def test_watt_env_of_an_unknown_application_exits_1(runtime, xdg):
    out = watt_cli("env", str(runtime.pid), "nope", xdg=xdg)
    assert out.returncode == 1 and "WATT_MANAGEMENT_UNKNOWN_APP" in out.stderr
    assert "Traceback" not in out.stderr
    assert watt_cli("env", "1", "2", "3", xdg=xdg).returncode == 2


def test_mask_environment():
    shown, masked = mask_environment({
        "GITHUB_TOKEN": "a", "AWS_SECRET_ACCESS_KEY": "b", "DB_PASSWORD": "c",
        "GOOGLE_APPLICATION_CREDENTIALS": "/x.json", "HOME": "/root", "LANG": "C",
        "REDIS_URL": "redis://:pass@h:6379/0", "PUBLIC_URL": "https://example.org/a@b",
        "SENTRY_DSN": "https://k@o.ingest/1", "PATH": "/bin"})
    assert shown["HOME"] == "/root" and shown["PATH"] == "/bin" and shown["LANG"] == "C"
    assert shown["PUBLIC_URL"] == "https://example.org/a@b"  # no user:password@ part
    assert shown["REDIS_URL"] == "redis://:****@h:6379/0"
    assert masked == ["AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GITHUB_TOKEN",
                      "GOOGLE_APPLICATION_CREDENTIALS", "REDIS_URL", "SENTRY_DSN"]
    assert all(shown[name] == "****" for name in masked if name != "REDIS_URL")


# -- watt completion -----------------------------------------------------------------------
def _bash_complete(line: str, xdg: Path) -> list[str]:
    """Complete the last word of ``line`` (empty after a trailing space) in a real
    bash that sourced what ``watt completion bash`` prints."""
    words = line.split(" ")
    script = (
        'eval "$(watt completion bash)"\n'
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_watt_completion watt\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_completion_of_commands_options_and_application_ids(runtime, xdg):
    assert _bash_complete("watt ap", xdg) == ["applications"]
    assert _bash_complete("watt completion ", xdg) == ["bash", "zsh", "fish"]
    assert "--timeout" in _bash_complete("watt restart --t", xdg)
    assert _bash_complete("watt env ", xdg) == ["proc", "web"]  # asked of the runtime
    assert _bash_complete("watt restart p", xdg) == ["proc"]


def test_completion_scripts_for_every_shell(xdg):
    for shell, marker in [("bash", "complete -o nosort -F _watt_completion watt"),
                          ("zsh", "compdef _watt_completion watt"),
                          ("fish", "complete --no-files --command watt")]:
        out = watt_cli("completion", shell, xdg=xdg)
        assert out.returncode == 0 and marker in out.stdout, (shell, out.stdout)
        assert f"_WATT_COMPLETE={shell}_complete" in out.stdout
    assert watt_cli("completion", "powershell", xdg=xdg).returncode == 2


# -- another user cannot reach the socket --------------------------------------------------
#: A Python another user may run (this venv's lives under /root, which is 0700).
_OTHER_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3")
                      if os.access(p, os.X_OK)), None)


def _connect_as(uid: int, path: Path) -> int:
    """Connect to the unix socket ``path`` from a child process running as ``uid``:
    0 when it connected, else the errno.  A fresh interpreter (exec), not a bare
    fork: forking this process, whose other threads run subinterpreters of other
    tests' runtimes, can crash the child before it tries."""
    code = ("import socket, sys\n"
            "try:\n"
            "    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(sys.argv[1])\n"
            "except OSError as exc:\n"
            "    sys.exit(exc.errno or 101)\n")
    done = subprocess.run([_OTHER_PYTHON, "-I", "-c", code, str(path)], user=uid, group=uid,
                          extra_groups=[], cwd="/", timeout=30, capture_output=True)
    return done.returncode


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root (run as "
                    "root to check; docs/cli.md explains the 0700 folder and 0600 socket)")
@pytest.mark.skipif(_OTHER_PYTHON is None, reason="no system python3 another user can run")
def test_another_user_cannot_reach_the_socket(runtime, tmp_path):
    # The control: the same child can connect where the permissions let it.
    open_dir = Path(tempfile.mkdtemp(prefix="wo-", dir="/tmp"))
    try:
        open_dir.chmod(0o755)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(open_dir / "open.sock"))
            os.chmod(open_dir / "open.sock", 0o666)
            server.listen()
            assert _connect_as(NOBODY, open_dir / "open.sock") == 0
    finally:
        shutil.rmtree(open_dir)
    # Watt's folder (0700) stops another user ...
    assert _connect_as(NOBODY, runtime.socket) == errno.EACCES
    # ... and so does the socket's own mode (0600) were the folder opened to others.
    folder = runtime.socket.parent
    folder.chmod(0o711)
    try:
        assert _connect_as(NOBODY, runtime.socket) == errno.EACCES
    finally:
        folder.chmod(0o700)
    assert _connect_as(os.getuid(), runtime.socket) == 0  # the owner still can


# -- the extension points the next endpoints use (/metrics, /logs) -------------------------
def test_a_route_can_answer_text_and_stream_over_the_real_socket():
    """A route added to the table answers another media type, or a body streamed
    chunk by chunk, through the same h11 server (over a real unix socket)."""
    import asyncio

    from watt.management import ManagementServer, Reply, request, route
    from watt.management.api import ROUTES

    async def chunks():
        for i in range(3):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0)

    closed = []

    async def broken():
        try:
            yield b"part\n"
            raise RuntimeError("the source failed")
        finally:
            closed.append(True)

    table = []
    saved = list(ROUTES)
    try:
        ROUTES.clear()  # route() registers into the shared table: use a scratch one
        route("GET", "/text", summary="text", responses={})(
            lambda api, request: Reply(body=f"n={request.arg('n')}\n".encode(),
                                       media_type="text/plain; version=0.0.4"))
        route("GET", "/stream", summary="stream", responses={})(
            lambda api, request: Reply(stream=chunks(), media_type="application/x-ndjson"))
        route("GET", "/broken", summary="broken", responses={})(
            lambda api, request: Reply(stream=broken(), media_type="text/plain"))
        table = list(ROUTES)
    finally:
        ROUTES[:] = saved

    async def go(folder: Path):
        server = ManagementServer(SimpleNamespace(pools={}), directory=folder)
        server.app.routes = table
        await server.start()
        try:
            transport = httpx.AsyncHTTPTransport(uds=str(server.path))
            async with httpx.AsyncClient(transport=transport, base_url="http://watt") as client:
                text = await client.get("/api/v1/text?n=5")
                async with client.stream("GET", "/api/v1/stream") as streamed:
                    lines = [line async for line in streamed.aiter_lines()]
                    encoding = streamed.headers.get("transfer-encoding")
                missing = await client.get("/api/v1/applications")
                cut = await client.get("/api/v1/broken")  # ends its body, keeps the server
                assert cut.status_code == 200 and cut.text == "part\n" and closed
            raw = await asyncio.to_thread(request, server.path, "GET", "/api/v1/text?n=7")
            return text, lines, encoding, missing, raw
        finally:
            await server.stop()

    folder = Path(tempfile.mkdtemp(prefix="wx-", dir="/tmp"))
    try:
        text, lines, encoding, missing, raw = asyncio.run(go(folder / "watt"))
    finally:
        shutil.rmtree(folder)
    assert text.status_code == 200 and text.text == "n=5\n"
    assert text.headers["content-type"] == "text/plain; version=0.0.4"
    assert lines == ["line 0", "line 1", "line 2"] and encoding == "chunked"
    assert missing.status_code == 404  # only the scratch table is served
    assert raw == (200, "n=7\n")  # watt.management.request: text for a non-JSON answer
