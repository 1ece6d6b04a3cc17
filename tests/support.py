"""Shared helpers: test applications live in tests/apps/, one folder each."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


def app_config(app_id: str, folder: str = "basic", **extra) -> dict:
    env = {"APP_NAME": app_id}
    env.update(extra.pop("env", {}))
    return {"id": app_id, "path": str(APPS / folder), "app": "main:app", "env": env, **extra}


class WattProcess:
    """``watt start`` (or ``command``: ``dev``) in a child process; waits for the URL
    it prints."""

    def __init__(self, *args: str, cwd: Path = ROOT, env: dict | None = None,
                 command: str = "start") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watt.cli", command, *args], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **(env or {})))
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream, sink) -> None:
        for line in stream:
            sink.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_url(self, timeout: float = 60) -> str:
        """Block until the process prints its URL (or exits, which fails the test)."""
        ended = 0
        while ended < 2:
            line = self._lines.get(timeout=timeout)
            if line is None:
                ended += 1
                continue
            match = re.search(r"running at (http://\S+)", line)
            if match:
                return match.group(1)
        pytest.fail(f"watt exited before serving: {''.join(self.stderr)}")

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def reset_memory_high_water() -> int:
    """Reset this process's peak RSS (VmHWM); return the current RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status_kb("VmRSS")


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Poll a condition of a running runtime until it holds, bounded: a readiness
    wait, never a bare sleep that hopes."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@contextlib.contextmanager
def watt_start(config: Path, prefix: str = "wt-"):
    """``watt start -c config`` with a private XDG_RUNTIME_DIR (where its management
    socket lives): yields ``(process, that dir)``; SIGTERM and cleanup after."""
    xdg = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: socket path < 108 bytes
    xdg.chmod(0o700)
    proc = WattProcess("-c", str(config), env={"XDG_RUNTIME_DIR": str(xdg)})
    try:
        yield proc, xdg
    finally:
        proc.proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
            shutil.rmtree(xdg, ignore_errors=True)


@contextlib.contextmanager
def recording_server(content_type: str = "text/plain"):
    """A local HTTP server on a free port that answers 200 to anything and records
    each request as ``(method, path, headers, body)``: a Pushgateway, an OTLP
    collector, a bulk endpoint.  Yields ``(base_url, received)``."""
    import http.server

    received: list[tuple[str, str, dict, bytes]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def _record(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append((self.command, self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _record  # noqa: N815 - http.server's naming

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()


def process_tree(pid: int) -> set[int]:
    """``pid`` and its descendants (e.g. a runtime and its process workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(children.get(p, []))
    return found


def listening_ports(pids) -> set[int]:
    """The TCP ports on which these processes hold a listening socket: their socket
    inodes (/proc/<pid>/fd) found in /proc/net/tcp{,6} in state LISTEN."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
