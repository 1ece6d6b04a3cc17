"""The `command` capability end to end: a real runtime, a real program (a standard
library HTTP server in tests/apps/command_app) started on $PORT and proxied."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from support import APPS, ROOT, app_config, wait_for

from capabilities import command
from watt.errors import ApplicationStartError
from watt.testing import RuntimeHandle


def program_folder(base, argv: list[str] | None = None, **options) -> str:
    """A copy of command_app whose watt.command.json runs this very Python."""
    folder = base / "command_app"
    shutil.copytree(APPS / "command_app", folder)
    options["command"] = argv or [sys.executable, "server.py"]
    (folder / command.CONFIG_FILE).write_text(json.dumps(options))
    return str(folder)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent, or for init, to reap it is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    folder = program_folder(tmp_path_factory.mktemp("cmd"))
    config = {"entrypoint": "cmd", "applications": [
        {"id": "cmd", "path": folder}, app_config("front")]}
    with RuntimeHandle(config) as handle:
        yield handle


def hello(url: str) -> httpx.Response:
    return httpx.get(url + "/hello", timeout=30)


def test_detected_by_its_file_and_runs_in_a_subinterpreter(rt):
    apps = {a["id"]: a for a in rt.applications()}
    assert apps["cmd"]["kind"] == "command"
    assert apps["cmd"]["isolation"] == "subinterpreter"
    assert apps["cmd"]["workers"][0]["pid"] == os.getpid()


def test_reached_through_the_entrypoint(rt):
    reply = hello(rt.url)
    assert reply.status_code == 200
    pid = reply.json()["pid"]
    assert pid != os.getpid() and alive(pid)
    # Kept alive: a second request is answered by the same program.
    assert hello(rt.url).json()["pid"] == pid
    assert httpx.get(rt.url + "/nope", timeout=30).status_code == 404


def test_reached_through_the_mesh_from_another_app(rt):
    reply = rt.inject("front", "GET", "/fetch?target=cmd.plt.local&path=/hello").json()
    assert reply["status"] == 200
    assert json.loads(reply["body"])["pid"] == hello(rt.url).json()["pid"]


def test_a_1mb_post_body_is_echoed(rt):
    body = os.urandom(1024 * 1024)
    reply = httpx.post(rt.url + "/echo", content=body, timeout=30,
                       headers={"content-type": "application/x-test"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-test"
    assert reply.content == body


def test_a_streamed_post_body_without_length_is_sent_chunked(rt):
    def gen():
        for i in range(8):
            yield bytes([65 + i]) * 100_000

    reply = httpx.post(rt.url + "/echo", content=gen(), timeout=30)
    assert reply.status_code == 200
    assert reply.content == b"".join(bytes([65 + i]) * 100_000 for i in range(8))
    # The kept-alive connection is still in step: the next request is answered.
    assert hello(rt.url).status_code == 200


def test_headers_and_x_forwarded_are_passed_as_the_entrypoint_set_them(rt):
    reply = httpx.get(rt.url + "/headers", timeout=30, headers={"x-custom": "yes"}).json()
    lowered = {k.lower(): v for k, v in reply.items()}
    assert lowered["x-custom"] == "yes"
    assert lowered["x-forwarded-for"] == "127.0.0.1"  # once: the proxy adds no hop
    assert lowered["x-forwarded-proto"] == "http"
    assert lowered["host"] == rt.url.removeprefix("http://")
    assert "connection" not in lowered or lowered["connection"].lower() != "close"


def test_the_programs_output_is_captured_with_the_app_id(rt):
    # The program's stdout and stderr become log lines of the application.
    tag = uuid.uuid4().hex
    pid = httpx.get(rt.url + f"/hello?tag={tag}", timeout=30).json()["pid"]
    printed = f"hello served by pid {pid} tag={tag}"  # the program's stdout
    logged = f'"GET /hello?tag={tag} HTTP/1.1" 200'  # http.server's stderr log

    def both_seen() -> bool:
        lines = rt.logs(app="cmd")
        return any(r["msg"].endswith(printed) and r["level"] == "info" for r in lines) and \
            any(logged in r["msg"] and r["level"] == "warning" for r in lines)

    wait_for(both_seen, timeout=10)


def test_a_crashed_program_is_restarted_and_none_is_left_after_stop(tmp_path, watt_runtime):
    folder = program_folder(tmp_path)
    handle = watt_runtime({"entrypoint": "cmd", "applications": [
        {"id": "cmd", "path": folder, "kind": "command"}]})
    first = hello(handle.url).json()["pid"]
    assert httpx.get(handle.url + "/crash", timeout=30).text == "bye\n"
    statuses = []

    def unavailable() -> bool:
        reply = hello(handle.url)
        statuses.append(reply.status_code)
        return reply.status_code == 503 and int(reply.headers["retry-after"]) >= 1

    wait_for(unavailable, timeout=10)  # the backoff (1 s) leaves a 503 window
    answers = {}

    def back() -> bool:
        reply = hello(handle.url)
        if reply.status_code == 200:
            answers["pid"] = reply.json()["pid"]
        return reply.status_code == 200

    wait_for(back, timeout=20)
    second = answers["pid"]
    assert second != first and alive(second)
    wait_for(lambda: not alive(first), timeout=5)
    handle.stop()
    assert not alive(second)


def test_a_command_that_exits_at_once_fails_the_start(tmp_path, watt_runtime):
    folder = program_folder(tmp_path, [sys.executable, "-c",
                                       "import sys; print('no port for me'); sys.exit(7)"])
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [{"id": "quitter", "path": folder}]})
    assert info.value.code == "WATT_APP_LIFESPAN_FAILED"
    message = str(info.value)
    assert "exited with code 7" in message and "no port for me" in message
    assert "quitter" in message


def test_a_command_that_never_listens_fails_after_start_timeout(tmp_path, watt_runtime):
    marker = tmp_path / "pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); " \
             "time.sleep(60)"
    folder = program_folder(tmp_path, [sys.executable, "-c", script], startTimeout=1)
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [{"id": "mute", "path": folder}]})
    assert info.value.code == "WATT_APP_LIFESPAN_FAILED"
    assert "did not listen" in str(info.value) and "startTimeout (1 s)" in str(info.value)
    assert not alive(int(marker.read_text()))


def test_a_missing_program_fails_the_start_with_its_name(tmp_path, watt_runtime):
    folder = program_folder(tmp_path, ["./no-such-program", "--port"])
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [{"id": "ghost", "path": folder}]})
    assert info.value.code == "WATT_APP_LIFESPAN_FAILED"
    assert "`./no-such-program --port` could not start" in str(info.value)


def test_runs_the_same_in_a_process_worker(tmp_path, watt_runtime):
    folder = program_folder(tmp_path)
    handle = watt_runtime({"entrypoint": "cmd", "applications": [
        {"id": "cmd", "path": folder, "isolation": "process"}]})
    [app] = handle.applications()
    assert app["isolation"] == "process"
    body = os.urandom(200_000)
    assert httpx.post(handle.url + "/echo", content=body, timeout=30).content == body
    pid = hello(handle.url).json()["pid"]
    handle.stop()
    assert not alive(pid)


def test_stop_also_ends_what_the_program_started(tmp_path, watt_runtime):
    # A shell that runs the server as its child: the whole process group is stopped.
    folder = program_folder(tmp_path, ["sh", "-c", f"{shlex.quote(sys.executable)} server.py; "
                                       "echo unreachable"])
    handle = watt_runtime({"entrypoint": "cmd", "applications": [
        {"id": "cmd", "path": folder}]})
    server_pid = hello(handle.url).json()["pid"]
    assert alive(server_pid)
    handle.stop()
    # Not Watt's child but the shell's: once killed, init reaps it, a moment later.
    wait_for(lambda: not alive(server_pid), timeout=5)


def test_example_calls_the_program_through_the_mesh(watt_runtime):
    handle = watt_runtime(ROOT / "examples" / "command" / "watt.json")
    reply = httpx.get(handle.url + "/now", timeout=30).json()
    assert reply["via"] == "mesh" and reply["status"] == 200
    assert reply["clock"]["pid"] != os.getpid() and reply["clock"]["epoch"] > 0


def test_a_bad_timeout_is_refused_with_its_key(tmp_path, watt_runtime):
    folder = program_folder(tmp_path, startTimeout="soon")
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [{"id": "cmd", "path": folder}]})
    assert info.value.code == "WATT_APP_START_FAILED"
    assert "`startTimeout` must be a positive number" in str(info.value)


def test_command_option_parsing():
    assert command.parse_command("python -m http.server 'a b'") == [
        "python", "-m", "http.server", "a b"]
    assert command.parse_command(["x", "y"]) == ["x", "y"]
    for bad in ("", [], None, [1]):
        with pytest.raises(command.CapabilityError):
            command.parse_command(bad)


UNIX_PROGRAM = '''
import http.server, os, socketserver

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("unix " + self.path + " host=" + self.headers["host"]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix"

print("PORT set:", "PORT" in os.environ, "socket:", os.environ["SOCKET_PATH"], flush=True)
socketserver.UnixStreamServer(os.environ["SOCKET_PATH"], Handler).serve_forever()
'''


def test_a_program_can_listen_on_a_unix_socket(tmp_path, watt_runtime):
    folder = tmp_path / "unix_app"
    folder.mkdir()
    (folder / "server.py").write_text(UNIX_PROGRAM)
    (folder / command.CONFIG_FILE).write_text(json.dumps(
        {"command": [sys.executable, "server.py"], "listen": "socket"}))
    rt = watt_runtime({"entrypoint": "unix", "applications": [
        {"id": "unix", "path": str(folder), "kind": "command"}, app_config("front")]})
    for _ in range(3):  # kept alive: the same socket connection serves them
        reply = httpx.get(rt.url + "/hello?x=1", timeout=30)
        assert reply.status_code == 200 and reply.text.startswith("unix /hello?x=1 host=")
    mesh = rt.inject("front", "GET", "/mesh?target=unix.plt.local&path=/via-mesh").json()
    assert mesh["status"] == 200 and mesh["body"].startswith("unix /via-mesh")
    wait_for(lambda: any(r["msg"].startswith("PORT set: False") for r in rt.logs(app="unix")))
    line = next(r["msg"] for r in rt.logs(app="unix") if r["msg"].startswith("PORT set"))
    socket_path = Path(line.split("socket: ", 1)[1])
    assert socket_path.is_socket() and (socket_path.parent.stat().st_mode & 0o077) == 0
    rt.stop()
    assert not socket_path.parent.exists()  # its private folder goes with the app


def test_listen_must_be_port_or_socket(tmp_path, watt_runtime):
    from watt import WattError

    folder = program_folder(tmp_path, listen="pipe")
    with pytest.raises(WattError) as info:
        watt_runtime({"applications": [{"id": "cmd", "path": folder, "kind": "command"}]})
    assert "listen" in str(info.value)


def test_command_keys_in_watt_json_win_over_the_file(tmp_path, watt_runtime):
    folder = tmp_path / "unix_app"
    folder.mkdir()
    (folder / "server.py").write_text(UNIX_PROGRAM)
    (folder / command.CONFIG_FILE).write_text(json.dumps({"command": "false"}))
    rt = watt_runtime({"applications": [
        {"id": "unix", "path": str(folder), "kind": "command",
         "command": [sys.executable, "server.py"], "listen": "socket",
         "startTimeout": 20, "stopTimeout": 2}]})
    assert httpx.get(rt.url + "/x", timeout=30).text.startswith("unix /x")
