"""``watt dev``: a change under an application's folder restarts that application only.

The CLI runs as a subprocess against a real runtime; files are edited on disk
and the tests wait for the new answer (bounded polls, never a bare sleep).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path

import httpx
from support import WattProcess, wait_for

from watt.dev import Reloader, is_ignored, owners, watch_roots

FRONT = '''\
import asyncio
import os
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import watt.mesh

BOOT = uuid.uuid4().hex  # a new value each time this application's worker starts
MARKS = Path(os.environ["MARKS"])


async def alpha(request):
    reply = await watt.mesh.fetch("http://alpha.plt.local/")
    return PlainTextResponse(reply.text)


async def slow(request):
    (MARKS / "started").touch()
    while not (MARKS / "release").exists():  # the test says when to answer
        await asyncio.sleep(0.01)
    return PlainTextResponse("slow done " + BOOT)


async def boot(request):
    return PlainTextResponse(BOOT)


app = Starlette(routes=[Route("/alpha", alpha), Route("/slow", slow), Route("/boot", boot)])
'''


def alpha_source(version: str, extra: str = "") -> str:
    return f'''\
"""alpha, version {version}."""
{extra}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": b"alpha {version}"}})
'''


def make_project(tmp_path: Path, alpha_workers: int = 1) -> Path:
    (tmp_path / "front").mkdir()
    (tmp_path / "front" / "main.py").write_text(FRONT)
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "main.py").write_text(alpha_source("v1"))
    marks = tmp_path / "marks"
    marks.mkdir()
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({
        "entrypoint": "front", "server": {"port": 0},
        "applications": [
            {"id": "front", "path": "front", "kind": "starlette", "env": {"MARKS": str(marks)}},
            {"id": "alpha", "path": "alpha", "kind": "asgi", "workers": alpha_workers}]},
        indent=2))
    return config


def start_dev(config: Path) -> tuple[WattProcess, str]:
    proc = WattProcess("-c", str(config), command="dev", cwd=config.parent)
    url = proc.wait_url()
    wait_for(lambda: "watching 2 folder(s)" in logged(proc))  # the watcher is in place
    return proc, url


def logged(proc: WattProcess) -> str:
    """Everything the process printed, JSON log lines reduced to their message."""
    lines = []
    for line in [*proc.stdout, *proc.stderr]:
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line.rstrip("\n"))
        else:
            lines.append(str(record.get("msg", line)) if isinstance(record, dict) else line)
    return "\n".join(lines)


def text(url: str) -> str:
    return httpx.get(url, timeout=30).text


def test_a_change_restarts_only_its_application_while_another_answers(tmp_path):
    config = make_project(tmp_path)
    marks = tmp_path / "marks"
    proc, url = start_dev(config)
    try:
        boot = text(url + "/boot")
        assert text(url + "/alpha") == "alpha v1"
        slow: dict = {}
        request = threading.Thread(
            target=lambda: slow.update(r=httpx.get(url + "/slow", timeout=60)))
        request.start()
        wait_for((marks / "started").exists)  # front is inside the slow request

        (tmp_path / "alpha" / "main.py").write_text(alpha_source("v2 (edited)"))
        wait_for(lambda: text(url + "/alpha") == "alpha v2 (edited)")

        assert request.is_alive(), "the slow request was meant to be in flight"
        (marks / "release").touch()
        request.join(30)
        assert slow["r"].status_code == 200
        assert slow["r"].text == "slow done " + boot  # answered by the worker it started on
        assert text(url + "/boot") == boot  # front was not restarted
        log = logged(proc)
        assert "restarted 'alpha'" in log and "restarting 'front'" not in log

        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()


def test_a_broken_change_keeps_the_old_code_serving_until_fixed(tmp_path):
    config = make_project(tmp_path, alpha_workers=2)  # neither old worker may be lost
    source = tmp_path / "alpha" / "main.py"
    proc, url = start_dev(config)
    try:
        assert text(url + "/alpha") == "alpha v1"

        # A syntax error on line 2: its traceback names the file and line.
        source.write_text(alpha_source("v2", extra="def broken(:"))
        wait_for(lambda: "SyntaxError" in logged(proc))
        log = logged(proc)
        assert f'File "{source.resolve()}", line 2' in log
        assert "'alpha' keeps serving its previous code" in log
        assert "watt/worker" not in log and "Traceback" in log  # the user's frames only
        assert [text(url + "/alpha") for _ in range(4)] == ["alpha v1"] * 4  # both workers

        # An import error: the old code still serves.
        source.write_text(alpha_source("v2", extra="import not_a_module_of_this_test"))
        wait_for(lambda: "No module named 'not_a_module_of_this_test'" in logged(proc))
        assert text(url + "/alpha") == "alpha v1"

        source.write_text(alpha_source("v3, fixed"))
        wait_for(lambda: "restarted 'alpha'" in logged(proc))  # both workers replaced
        assert [text(url + "/alpha") for _ in range(4)] == ["alpha v3, fixed"] * 4
    finally:
        proc.kill()


def test_changes_during_a_restart_make_one_more_restart_not_one_each(tmp_path, watt_runtime):
    rt = watt_runtime(make_project(tmp_path))
    changed = str(tmp_path / "alpha" / "main.py")

    async def burst() -> int:
        reloader = Reloader(rt.runtime)
        reloader.handle({changed, str(tmp_path / "elsewhere.py")})
        restart = reloader._running["alpha"]
        await asyncio.sleep(0)  # one step: the restart has begun and waits for a new worker
        for _ in range(2):  # arrive while it runs: one more restart, not two
            reloader.handle({changed})
        assert set(reloader._running) == {"alpha"}
        await restart
        return reloader.reloads

    assert rt._call(burst()) == 2
    [alpha] = [a for a in rt.applications() if a["id"] == "alpha"]
    [front] = [a for a in rt.applications() if a["id"] == "front"]
    assert (alpha["restarts"], front["restarts"]) == (2, 0)


# -- the pure parts ---------------------------------------------------------------------------
def test_ignored_changes():
    assert is_ignored("/p/a/__pycache__/main.cpython-313.pyc")
    assert is_ignored("/p/a/main.pyc")
    assert is_ignored("/p/a/.git/index")
    assert is_ignored("/p/a/.venv/lib/site.py")
    assert is_ignored("/p/a/.main.py.swp") and is_ignored("/p/a/main.py~")
    assert is_ignored("/p/a/db.sqlite3") and is_ignored("/p/a/app.log")
    assert not is_ignored("/p/a/main.py")
    assert not is_ignored("/p/a/templates/index.html")
    assert not is_ignored("/p/a/.env")


def test_owners_picks_the_deepest_folder():
    folders = {"root": "/p", "a": "/p/a", "a2": "/p/a", "b": "/p/b"}
    assert owners(["/p/a/x.py", "/p/b/y/z.py", "/p/c.py", "/q/out.py", "/p/ab.py"], folders) == {
        "a": ["/p/a/x.py"], "a2": ["/p/a/x.py"], "b": ["/p/b/y/z.py"],
        "root": ["/p/ab.py", "/p/c.py"]}
    assert owners(["/p/a/x.py"], {"b": "/p/b"}) == {}
    assert watch_roots(["/p/a", "/p", "/q/b", "/p/a"]) == ["/p", "/q/b"]
    assert watch_roots(["/p/ab", "/p/a"]) == ["/p/a", "/p/ab"]


def test_a_static_application_serves_an_edit_without_a_restart(tmp_path, watt_runtime):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>before</p>")
    rt = watt_runtime({"applications": [{"id": "site", "path": str(site)}]})
    assert "before" in httpx.get(rt.url + "/").text
    (site / "index.html").write_text("<p>after</p>")

    async def change() -> dict:
        reloader = Reloader(rt.runtime)
        reloader.handle({str(site / "index.html")})
        return dict(reloader._running)

    assert rt._call(change()) == {}  # no restart started
    assert "after" in httpx.get(rt.url + "/").text
    assert rt.applications()[0]["restarts"] == 0
    assert any("served as is" in r["msg"] for r in rt.logs(app="site"))
