"""What every benchmark needs: start a server, know when it is ready, load it, stop it.

Kept apart from any one benchmark so that the entrypoint, mesh, scaling and
start-up benchmarks all start, wait for and stop their servers the same way, and
so that their numbers come from the same load generator code.

Habits it enforces (see STYLE.md, "tests that never sleep"):

- servers bind port 0 or a port we just found free, and report their URL;
- readiness is an observed fact (a URL on the output, then a GET answered 200),
  bounded in time, never a fixed sleep;
- a server runs in its own session with its output drained all the time (a full
  pipe would stall it mid-benchmark), and is stopped with SIGTERM, then SIGKILL
  for the whole session if it does not exit or leaves processes behind.
"""

from __future__ import annotations

import collections
import http.client
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from loadgen import LoadResult, check_url

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen.py"

# How long a server may take from exec to answering its first request.
READY_TIMEOUT_S = 30.0
# How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
# Slack given to a load run on top of its own duration before it is abandoned.
LOAD_SLACK_S = 30.0
# Lines of server output kept for the failure report: enough for a traceback.
OUTPUT_LINES_KEPT = 200

LOCAL_URL = re.compile(r"http://127\.0\.0\.1:(\d+)")
#: Watt prints its entrypoint URL on this line (log lines before it name other URLs,
#: such as the /metrics server's).
WATT_URL = re.compile(r"(?<=running at )http://127\.0\.0\.1:(\d+)")


class ServerError(Exception):
    """A server did not start, did not become ready, or died while measured."""


class LoadError(Exception):
    """The load generator itself failed; the server may be fine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for servers that need one.

    There is a small window in which another process can take it; a server that
    can bind port 0 and print its URL should be started that way instead.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class StopReport:
    """How a server went away: its exit code and what had to be forced."""

    returncode: int | None
    killed: bool
    left_processes: bool

    def describe(self) -> str:
        """One phrase for the progress log."""
        if self.returncode is None:
            return "never started"
        text = f"exit code {self.returncode}"
        if self.returncode < 0:
            text += f" ({signal.Signals(-self.returncode).name})"
        if self.killed:
            text += f", killed after not exiting {STOP_TIMEOUT_S:g} s after SIGTERM"
        if self.left_processes:
            text += ", left processes running after it exited (killed them)"
        return text


class ServerProcess:
    """One server under test, started in its own session, its output always drained.

    ``url_pattern`` is looked for on stdout and stderr alike; its first group is the
    port, and a port of 0 (printed before binding) is not taken as the URL.
    ``env`` adds to (or overrides) this process's environment for the server only,
    e.g. to tell one application where another one listens.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path,
        url_pattern: re.Pattern[str] = LOCAL_URL,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env or {})
        self._url_pattern = url_pattern
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._changed = threading.Condition()
        self._lines: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        self._closed_streams = 0
        self._url: str | None = None
        self._started_at = 0.0

    def start(self) -> None:
        """Start the server; raises ServerError if it cannot even be executed."""
        # Unbuffered, so a Python server's "listening on" line reaches our pipe at
        # once instead of sitting in a block buffer until it exits.
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self._started_at = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerError(f"could not execute {self.argv[0]!r}: {exc}") from exc
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for label, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            thread = threading.Thread(
                target=self._drain, args=(label, stream), name=f"{self.name}-{label}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _drain(self, label: str, stream: IO[bytes]) -> None:
        """Read one output stream to its end, keeping the tail and spotting the URL."""
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            with self._changed:
                self._lines.append(f"{label}: {line}")
                if self._url is None:
                    for match in self._url_pattern.finditer(line):
                        if int(match.group(1)) != 0:
                            self._url = match.group(0)
                            break
                self._changed.notify_all()
        stream.close()
        with self._changed:
            self._closed_streams += 1
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        """The server's process id (also its process group and session id)."""
        assert self._proc is not None, "start() first"
        return self._proc.pid

    def returncode(self) -> int | None:
        """The exit code if the server has exited, else None."""
        assert self._proc is not None, "start() first"
        return self._proc.poll()

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the server to exit: its exit code, or None if it runs.

        The way to pause between two polls of a server: an exit is seen at once.
        """
        assert self._proc is not None, "start() first"
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        """The last lines the server printed, each tagged with its stream."""
        with self._changed:
            return "\n".join(self._lines)

    def _since_start(self, deadline: float) -> str:
        """A deadline as "N s" after the start, for error messages."""
        return f"{deadline - self._started_at:.0f} s"

    def wait_for_url(self, deadline: float) -> str:
        """Block until the server prints its URL; ``deadline`` is a time.monotonic() value."""
        assert self._proc is not None, "start() first"
        with self._changed:
            while self._url is None:
                code = self._proc.poll()
                if code is not None:
                    raise ServerError(f"exited with code {code} before printing its URL")
                if self._closed_streams == 2:
                    raise ServerError("closed its stdout and stderr before printing its URL")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    waited = self._since_start(deadline)
                    raise ServerError(f"printed no http://127.0.0.1:<port> URL within {waited}")
                # Woken by every output line; the cap only bounds how late an exit
                # that closes no pipe (a grandchild holds it) is noticed.
                self._changed.wait(min(remaining, 0.25))
            return self._url

    def wait_until_ready(self, url: str, deadline: float) -> None:
        """Poll ``GET url`` until it answers 200; ``deadline`` is a time.monotonic() value.

        Between attempts the harness waits on the server process itself, so an exit
        is seen at once; the pause grows from 5 ms to 100 ms, so a fast server is
        measured seconds earlier than with any fixed sleep.
        """
        assert self._proc is not None, "start() first"
        host, port, path = check_url(url)
        pause = 0.005
        last_error = "no attempt"
        while True:
            conn = http.client.HTTPConnection(host, port, timeout=1.0)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = self._since_start(deadline)
                raise ServerError(f"GET {url} did not answer 200 within {waited} ({last_error})")
            try:
                code = self._proc.wait(timeout=min(pause, remaining))
            except subprocess.TimeoutExpired:
                pause = min(pause * 2, 0.1)
                continue
            raise ServerError(f"exited with code {code} before answering GET {url}")

    def stop(self) -> StopReport:
        """SIGTERM the server, then SIGKILL its whole session if needed; idempotent.

        SIGTERM goes to the server alone, because shutting down its own children is
        part of what a server must do; what is left after that is killed and said.
        """
        if self._proc is None:
            return StopReport(None, False, False)
        killed = False
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                killed = True
        left_processes = _kill_session(self._proc.pid) and not killed
        returncode = self._proc.wait()
        for thread in self._threads:
            thread.join(timeout=2.0)
        return StopReport(returncode, killed, left_processes)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _kill_session(pgid: int) -> bool:
    """SIGKILL every process left in the server's process group; True if there were any."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


_WRK_TIME = re.compile(r"([\d.]+)(us|ms|s|m|h)\b")
_WRK_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _wrk_time_us(text: str) -> float:
    """Convert a wrk duration such as ``1.84ms`` or ``3.00s`` to microseconds."""
    match = _WRK_TIME.fullmatch(text.strip())
    if match is None:
        raise LoadError(f"cannot read wrk duration {text!r}")
    return float(match.group(1)) * _WRK_UNITS_US[match.group(2)]


def parse_wrk_output(text: str, connections: int, tool: str = "wrk") -> LoadResult:
    """Read requests/s, p50, p99 and error counts from ``wrk --latency`` output.

    A pure function of the text, so it is checked against captured outputs.
    """

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise LoadError(f"wrk output has no line matching {pattern!r}:\n{text}")
        return match

    total = find(r"^\s*(\d+) requests in (\S+),")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        errors = sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return LoadResult(
        tool=tool,
        connections=connections,
        duration_s=_wrk_time_us(total.group(2)) / 1e6,
        requests=int(total.group(1)),
        requests_per_s=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_us=_wrk_time_us(find(r"^\s+50(?:\.0+)?%\s+(\S+)").group(1)),
        p99_us=_wrk_time_us(find(r"^\s+99(?:\.0+)?%\s+(\S+)").group(1)),
        errors=errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_version(wrk: str) -> str:
    """``wrk 4.1.0`` or similar, for the report header (wrk -v exits non-zero)."""
    try:
        out = subprocess.run([wrk, "-v"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "wrk"
    match = re.search(r"wrk\s+(?:\S*/)?([\d.]+)", out.stdout + out.stderr)
    return f"wrk {match.group(1)}" if match else "wrk"


def wrk_seconds(duration_s: float) -> int:
    """wrk takes whole seconds only: round a requested duration up."""
    return max(1, math.ceil(duration_s))


def _run_wrk(wrk: str, url: str, connections: int, seconds: int) -> str:
    """Run wrk once and return its output; raises LoadError if it fails."""
    argv = [
        wrk,
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        url,
    ]
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=seconds + LOAD_SLACK_S
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk did not finish within {seconds + LOAD_SLACK_S:g} s") from exc
    if done.returncode != 0:
        raise LoadError(f"wrk exited with code {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def run_load(
    url: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    wrk: str | None,
) -> LoadResult:
    """Load ``url`` with wrk when given its path, else with the built-in generator.

    Either way the load runs in another process than this harness. The warm-up
    is a discarded wrk run for wrk, and the first seconds of the same run for the
    built-in generator (its connections then stay open into the measurement).
    """
    check_url(url)
    if wrk is not None:
        if warmup_s > 0:
            _run_wrk(wrk, url, connections, wrk_seconds(warmup_s))
        output = _run_wrk(wrk, url, connections, wrk_seconds(duration_s))
        return parse_wrk_output(output, connections)

    argv = [
        sys.executable,
        str(LOADGEN),
        url,
        f"--connections={connections}",
        f"--duration={duration_s}",
        f"--warmup={warmup_s}",
        "--json",
    ]
    limit = warmup_s + duration_s + LOAD_SLACK_S
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"the built-in load generator did not finish within {limit:g} s") from exc
    if done.returncode != 0 or not done.stdout.strip():
        raise LoadError(
            f"the built-in load generator exited with code {done.returncode}:\n{done.stderr}"
        )
    return LoadResult.from_json(done.stdout.strip().splitlines()[-1])


def machine_summary() -> str:
    """CPU count, CPU model and Python: what a reader needs to weigh the numbers."""
    usable = os.process_cpu_count()  # CPUs this process may run on (affinity)
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = ", " + line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({usable} usable){model}; {platform.system()} "
        f"{platform.machine()}; {platform.python_implementation()} {platform.python_version()}"
    )


@dataclass(frozen=True)
class LoadSettings:
    """How long and how hard every measurement runs; identical for every server and route."""

    duration_s: float
    connections: int
    warmup_s: float
    wrk: str | None


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server; ``url`` is None when the server prints it (Watt)."""

    name: str
    argv: list[str]
    cwd: Path
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
