"""watt dev debugging: one debugpy session over the applications (a real DAP client
attaches to the real adapter), and breakpoint() on the terminal through a pty."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest
from dap import DapClient
from support import APPS, ROOT, WattProcess, app_config

from watt.debug import DebugSession
from watt.errors import WattError

APP_FILE = APPS / "debugging" / "main.py"
BREAK_LINE = next(i for i, line in enumerate(APP_FILE.read_text().splitlines(), 1)
                  if "BREAK HERE" in line)


def write_config(folder: Path) -> Path:
    config = folder / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "entrypoint": "web", "applications": [
        app_config("web", "debugging"), app_config("api", "debugging")]}))
    return config


def get(url: str, timeout: float = 60) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def in_thread(func, *args) -> queue.Queue:
    results: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            results.put(func(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            results.put(exc)

    threading.Thread(target=run, daemon=True).start()
    return results


# -- which applications a debug session covers (pure) -----------------------------------------
def test_debug_session_moves_chosen_apps_to_process_workers(tmp_path):
    from watt.config import load_config

    config = load_config(write_config(tmp_path))
    session = DebugSession(["api"], 0)
    session.endpoint = "127.0.0.1:1:token:1"
    session.prepare(config)
    web, api = config.applications
    assert (web.isolation, api.isolation) == ("auto", "process")
    assert api.env["WATT_DEBUGPY"] == "127.0.0.1:1:token:1" and "WATT_DEBUGPY" not in web.env
    with pytest.raises(WattError) as info:
        DebugSession(["nope"], 0).prepare(load_config(write_config(tmp_path)))
    assert info.value.code == "WATT_DEBUG_UNKNOWN_APP" and "known: web, api" in str(info.value)


# -- one DAP session, a breakpoint in a process worker -----------------------------------------
def test_dap_client_hits_a_breakpoint_in_a_debugged_application(tmp_path):
    pytest.importorskip("debugpy")
    proc = WattProcess("-c", str(write_config(tmp_path)), "--debug", "api", "--debug-port", "0",
                       command="dev")
    root = child = None
    try:
        url = proc.wait_url()
        out = proc.output()
        port = int(re.search(r"debugpy\) listening on 127\.0\.0\.1:(\d+)", out)[1])
        assert "application 'api' runs in process workers for this debug session" in out
        assert "'web' ready: 1 subinterpreter" in out  # only the chosen one moved
        # What VS Code does: attach to the root (watt dev), then start the child session
        # the adapter asks for (startDebugging) for each worker that joins.
        root = DapClient(port)
        root.attach({}, connect={"host": "127.0.0.1", "port": port})
        announced = root.reverse_request("startDebugging")
        assert announced["request"] == "attach"
        child = DapClient(port)
        child.attach({str(APP_FILE): [BREAK_LINE]}, **announced["configuration"])
        answer = in_thread(get, f"{url}/mesh/api/compute")
        stopped = child.wait_event("stopped", reason="breakpoint")
        thread = stopped["body"]["threadId"]
        frame = child.request("stackTrace", threadId=thread)["body"]["stackFrames"][0]
        assert (frame["name"], frame["line"], frame["source"]["path"]) == (
            "compute", BREAK_LINE, str(APP_FILE))
        scope = child.request("scopes", frameId=frame["id"])["body"]["scopes"][0]
        names = {v["name"]: v["value"] for v in child.request(
            "variables", variablesReference=scope["variablesReference"])["body"]["variables"]}
        assert names["n"] == "21"
        assert answer.empty()  # the request waits while the worker is stopped
        assert get(f"{url}/") == "web ok"  # the other application keeps answering
        child.request("continue", threadId=thread)
        assert answer.get(timeout=30) == "api 42"
        proc.proc.terminate()
        assert proc.wait(timeout=60) == 0
    finally:
        for client in (child, root):
            if client is not None:
                client.close()
        proc.kill()


# -- breakpoint(): pdb on the terminal ------------------------------------------------------
class Terminal:
    """watt dev with a pseudo-terminal as stdin, stdout and stderr."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "watt.cli", "dev", *args],
                                     stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                                     close_fds=True, start_new_session=True,
                                     env=dict(os.environ, **env))
        os.close(slave)
        self.master, self.text = master, ""

    def expect(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not (found := re.search(pattern, self.text)):
                if deadline.is_set() or self.proc.poll() is not None:
                    pytest.fail(f"no {pattern!r} on the terminal; it shows:\n{self.text}")
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if ready:
                    try:
                        self.text += os.read(self.master, 65536).decode(errors="replace")
                    except OSError:  # the other side closed
                        pass
            return found
        finally:
            timer.cancel()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C would; the exit status."""
        self.proc.terminate()
        deadline = threading.Timer(30, self.proc.kill)
        deadline.start()
        try:
            while self.proc.poll() is None:  # keep the pty drained so watt never blocks
                if select.select([self.master], [], [], 0.2)[0]:
                    try:
                        self.text += os.read(self.master, 65536).decode(errors="replace")
                    except OSError:
                        pass
            return self.proc.returncode
        finally:
            deadline.cancel()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_breakpoint_opens_pdb_on_the_terminal_while_other_apps_answer(tmp_path):
    # watt dev's socket folder goes to a short TMPDIR (a unix socket path is short)
    temp = tempfile.mkdtemp(prefix="wt")
    term = Terminal("-c", str(write_config(tmp_path)), env={"TMPDIR": temp})
    try:
        url = term.expect(r"running at (http://\S+)")[1]
        answer = in_thread(get, f"{url}/mesh/api/pause")
        term.expect(r"breakpoint\(\) in application 'api'")
        term.expect(r"\(Pdb\) ")
        term.type("p value\n")
        term.expect(r"'api paused'")
        assert get(f"{url}/") == "web ok"  # web answers while api sits in pdb
        assert answer.empty()
        term.type("c\n")
        assert answer.get(timeout=30) == "api paused"
        term.expect(r"pdb session of 'api' ended")
        # a second breakpoint() opens a new session
        answer = in_thread(get, f"{url}/mesh/api/pause")
        term.expect(r"(?s)session of 'api' ended.*\(Pdb\) ")
        term.type("c\n")
        assert answer.get(timeout=30) == "api paused"
        assert [p.name for p in Path(temp).iterdir()][0].startswith("watt-pdb-")
        assert term.stop() == 0
        assert list(Path(temp).iterdir()) == []  # the socket's folder is removed at exit
    finally:
        term.close()
        shutil.rmtree(temp, ignore_errors=True)
