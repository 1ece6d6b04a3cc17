"""Any program, in any language, that serves HTTP on ``$PORT``: ``kind: "command"``.

The loader returns a plain ASGI application that owns the program:

- lifespan start-up picks a free port on 127.0.0.1, starts the command with
  ``PORT`` and ``HOST=127.0.0.1`` in its environment (cwd = the application's
  folder), and is ready once a TCP connect to that port succeeds;
- every HTTP request is proxied to ``http://127.0.0.1:PORT`` over a pool of
  kept-alive HTTP/1.1 connections driven by h11 (sans-IO, loads in a
  subinterpreter), bodies streamed both ways;
- the program's stdout and stderr go line by line to the worker's stdout and
  stderr, so each line is a log line of the application (info and warning);
- a program that exits while running is restarted with a backoff (1 s,
  doubling, at most 30 s); requests meanwhile get ``503`` with ``Retry-After``;
- lifespan shut-down sends SIGTERM to the program's process group, waits
  ``stopTimeout`` seconds (default 10), then SIGKILL.

Options (from the runtime, else from ``watt.command.json`` in the folder):
``command`` (string, split with :func:`shlex.split`, or a list of strings),
``startTimeout`` (seconds, default 30), ``stopTimeout`` (seconds, default 10),
``listen`` (``"port"``, default, or ``"socket"``: ``$SOCKET_PATH``, a unix socket in
a private folder, instead of ``$PORT``).

Standard library and h11 only, so it runs in a subinterpreter.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import shlex
import signal
import socket
import sys
import time

import h11

from watt.capability import Capability, CapabilityError

CONFIG_FILE = "watt.command.json"
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
TAIL_LINES = 20
CHUNK = 64 * 1024
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
               b"te", b"trailer", b"upgrade", b"proxy-authenticate", b"proxy-authorization"}


def read_config_file(path: str) -> dict | None:
    """The options in ``<path>/watt.command.json``, or None when there is no such file."""
    full = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(full):
        return None
    try:
        with open(full, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CapabilityError(f"command: cannot read {full}: {exc}",
                              code="WATT_APP_START_FAILED") from None
    if not isinstance(data, dict):
        raise CapabilityError(f"command: {full} must hold a JSON object",
                              code="WATT_APP_START_FAILED")
    return data


def detect(path: str) -> dict | None:
    """A folder with ``watt.command.json`` (an explicit statement, so priority 30)."""
    try:
        return read_config_file(path)
    except CapabilityError:
        return {}  # detected; the loader reports the broken file with the app's id


def parse_command(value) -> list[str]:
    """``argv`` from a string (shell-like words, no shell) or a list of strings."""
    if isinstance(value, str):
        argv = shlex.split(value)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        argv = list(value)
    else:
        argv = []
    if not argv:
        raise CapabilityError(
            "command: no `command` given (a string or a list of strings, in the config or "
            f"in {CONFIG_FILE} in the application's folder)", code="WATT_APP_START_FAILED")
    return argv


def load(options: dict) -> CommandApp:
    folder = options.get("path") or sys.path[0]
    merged = dict(read_config_file(folder) or {})
    merged.update({k: v for k, v in options.items() if v is not None})
    argv = parse_command(merged.get("command"))
    timeouts = {}
    for key, default in (("startTimeout", 30), ("stopTimeout", 10)):
        value = merged.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise CapabilityError(f"command: `{key}` must be a positive number of seconds, "
                                  f"not {value!r}", code="WATT_APP_START_FAILED")
        timeouts[key] = float(value)
    listen = merged.get("listen", "port")
    if listen not in ("port", "socket"):
        raise CapabilityError(f"command: `listen` must be \"port\" or \"socket\", not "
                              f"{listen!r}", code="WATT_APP_START_FAILED")
    return CommandApp(argv, cwd=folder, app_id=_app_id(merged, folder),
                      start_timeout=timeouts["startTimeout"],
                      stop_timeout=timeouts["stopTimeout"], listen=listen)


def _app_id(options: dict, folder: str) -> str:
    """The application's id: from the options when the runtime passes it, else the
    worker's mesh client knows it (looked up, never imported), else the folder name."""
    if options.get("id"):
        return str(options["id"])
    mesh = sys.modules.get("watt.worker.mesh_client")
    return getattr(mesh, "_app_id", None) or os.path.basename(os.path.abspath(folder))


class Address:
    """Where the program listens: ``127.0.0.1:port`` (``$PORT``), or a unix socket
    (``$SOCKET_PATH``, ``listen: "socket"`` in watt.command.json)."""

    def __init__(self, port: int | None = None, path: str | None = None) -> None:
        self.port, self.path = port, path

    def environment(self) -> dict[str, str]:
        if self.path is not None:
            return {"SOCKET_PATH": self.path}
        return {"PORT": str(self.port), "HOST": "127.0.0.1"}

    async def connect(self):
        if self.path is not None:
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection("127.0.0.1", self.port)

    @property
    def host_header(self) -> bytes:
        return b"localhost" if self.path is not None else f"127.0.0.1:{self.port}".encode()

    def __str__(self) -> str:
        return f"unix socket {self.path} (its $SOCKET_PATH)" if self.path is not None else \
            f"127.0.0.1:{self.port} (its $PORT)"

    def remove(self) -> None:
        if self.path is not None:
            import shutil

            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)


def new_address(listen: str) -> Address:
    if listen == "socket":
        import tempfile

        folder = tempfile.mkdtemp(prefix="watt-cmd-")  # 0700: only this user reaches it
        return Address(path=os.path.join(folder, "http.sock"))
    return Address(port=free_port())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StartFailed(Exception):
    """The program did not come up: exited first, or did not listen in time."""


class CommandApp:
    """The ASGI application in front of one running program."""

    def __init__(self, argv: list[str], *, cwd: str, app_id: str,
                 start_timeout: float = 30.0, stop_timeout: float = 10.0,
                 listen: str = "port") -> None:
        self.argv, self.cwd, self.app_id = argv, cwd, app_id
        self.listen = listen
        self.address: Address | None = None
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.port: int | None = None
        self.pool: ConnectionPool | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.retry_at = 0.0  # monotonic time of the next restart while down
        self.restarts = 0
        self._pumps: list[asyncio.Task] = []
        self._supervisor: asyncio.Task | None = None
        self._stopping = False

    # -- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # WebSocket proxying is not done: refuse before accepting
            await send({"type": "websocket.close", "code": 1011})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except StartFailed as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict, receive, send) -> None:
        pool = self.pool
        if pool is None:
            wait = max(1, math.ceil(self.retry_at - time.monotonic()))
            await _simple(send, 503, b"the program is restarting\n",
                          [(b"retry-after", str(wait).encode())])
            return
        try:
            await pool.forward(scope, receive, send)
        except UpstreamUnavailable:
            await _simple(send, 503, b"the program is not answering\n",
                          [(b"retry-after", b"1")])
        except UpstreamBroken:
            await _simple(send, 502, b"the program closed the connection\n")

    # -- the program ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the program and wait until it listens; raise StartFailed otherwise."""
        address = new_address(self.listen)
        if self.address is not None:
            self.address.remove()  # the previous run's socket folder
        self.address = address
        self.tail.clear()  # a failure message shows this run's output only
        env = dict(os.environ, **address.environment())
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, cwd=self.cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)  # its own process group: stopped as a whole
        except OSError as exc:
            raise StartFailed(f"command `{shlex.join(self.argv)}` could not start: {exc}") from None
        self.proc = proc
        self._pumps = [asyncio.get_running_loop().create_task(self._pump(stream, out))
                       for stream, out in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
        failure = await self._wait_listening(proc, address)
        if failure is not None:
            await self._kill(proc)
            await self._drain_pumps()
            tail = "".join(f"\n  {line}" for line in self.tail)
            raise StartFailed(f"command `{shlex.join(self.argv)}` {failure}"
                              + (f"; last output:{tail}" if tail else "; it printed nothing"))
        self.port = address.port
        self.pool = ConnectionPool(address)

    async def _wait_listening(self, proc, address: Address) -> str | None:
        """None once a connect to ``address`` succeeds, else why not."""
        exited = asyncio.ensure_future(proc.wait())
        deadline = time.monotonic() + self.start_timeout
        try:
            while True:
                if exited.done():
                    await self._drain_pumps()
                    return (f"exited with code {proc.returncode} before listening on "
                            f"{address}")
                try:
                    _, writer = await asyncio.wait_for(address.connect(), 1.0)
                except (OSError, TimeoutError):
                    if time.monotonic() > deadline:
                        return (f"did not listen on {address} within "
                                f"startTimeout ({self.start_timeout:g} s)")
                    await asyncio.wait({exited}, timeout=0.05)  # readiness poll, bounded
                    continue
                writer.close()
                return None
        finally:
            if not exited.done():
                exited.cancel()

    async def _pump(self, stream: asyncio.StreamReader, out: str) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the stream's limit: take what is there
                line = await stream.read(CHUNK)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.tail.append(text)
            target = getattr(sys, out)  # looked up per line: the worker's captured stream
            target.write(text + "\n")
            target.flush()

    async def _drain_pumps(self) -> None:
        if self._pumps:
            await asyncio.wait(self._pumps, timeout=2.0)

    async def _supervise(self) -> None:
        """Restart the program whenever it exits, with a backoff, until shut-down."""
        delay = BACKOFF_FIRST
        while not self._stopping:
            proc = self.proc
            started = time.monotonic()
            code = await proc.wait()
            await self._drain_pumps()
            if self._stopping:
                return
            self.pool, pool = None, self.pool
            if pool is not None:
                pool.close()
            if time.monotonic() - started >= BACKOFF_MAX:
                delay = BACKOFF_FIRST  # it ran a good while: a fresh crash, not a loop
            _say(f"[{self.app_id}] command exited with code {code}; restarting in {delay:g} s")
            while not self._stopping:
                self.retry_at = time.monotonic() + delay
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                if self._stopping:
                    return
                try:
                    await self.start()
                except StartFailed as exc:
                    _say(f"[{self.app_id}] restart failed: {exc}; next try in {delay:g} s")
                    continue
                self.restarts += 1
                break

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.proc is not None:
            await self._kill(self.proc, self.stop_timeout)
            await self._drain_pumps()
        if self.address is not None:
            self.address.remove()

    async def _kill(self, proc, grace: float = 0.0) -> None:
        """SIGTERM to the program's process group, ``grace`` seconds, then SIGKILL."""
        if proc.returncode is None and grace > 0:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                _say(f"[{self.app_id}] command did not stop within {grace:g} s: SIGKILL")
        _signal_group(proc.pid, signal.SIGKILL)  # also what its children left behind
        await proc.wait()
        # Its own children die asynchronously and are reaped by init, not by us: give
        # the group a moment to empty so "stopped" means no process of it is left.
        for _ in range(100):  # at most 1 s
            if not _group_exists(proc.pid):
                break
            await asyncio.sleep(0.01)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- the proxy ---------------------------------------------------------------------------
class UpstreamUnavailable(Exception):
    """Nothing listens (the program is going down): safe to answer 503."""


class UpstreamBroken(Exception):
    """The program dropped the connection before its response started."""


class Upstream:
    """One HTTP/1.1 connection to the program: h11 state + asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, event) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self):
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.reader.read(CHUNK))

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return not self.reader.at_eof()
        return False

    def close(self) -> None:
        self.writer.close()


class ConnectionPool:
    """Kept-alive connections to ``127.0.0.1:port``; one request at a time on each."""

    def __init__(self, address: Address, max_idle: int = 32) -> None:
        self.address, self.max_idle = address, max_idle
        self.idle: list[Upstream] = []
        self.closed = False

    async def _connect(self) -> Upstream:
        try:
            reader, writer = await self.address.connect()
        except OSError as exc:
            raise UpstreamUnavailable(str(exc)) from None
        return Upstream(reader, writer)

    def _release(self, conn: Upstream) -> None:
        if not self.closed and len(self.idle) < self.max_idle and conn.reusable():
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self.closed = True
        for conn in self.idle:
            conn.close()
        self.idle.clear()

    async def forward(self, scope: dict, receive, send) -> None:
        # The entrypoint already set x-forwarded-for/-proto/-host for the client's hop;
        # they go through as they are, with every other end-to-end header.
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        first = await receive()
        if first["type"] == "http.disconnect":
            return
        body, more = first.get("body", b""), first.get("more_body", False)
        if not any(k.lower() == b"content-length" for k, _ in headers):
            if more:
                headers.append((b"transfer-encoding", b"chunked"))
            elif body or scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                headers.append((b"content-length", str(len(body)).encode()))
        if not any(k.lower() == b"host" for k, _ in headers):
            headers.append((b"host", self.address.host_header))
        request = h11.Request(method=scope["method"], target=target, headers=headers)
        # A kept-alive connection the program has closed meanwhile shows as a reset or
        # an early EOF: retry once on a fresh one when the whole body is still at hand.
        while True:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self._connect()
            try:
                await conn.send(request)
                if body:
                    await conn.send(h11.Data(data=body))
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        conn.close()
                        return
                    more = message.get("more_body", False)
                    if message.get("body"):
                        await conn.send(h11.Data(data=message["body"]))
                    body = None  # streamed: no longer replayable
                await conn.send(h11.EndOfMessage())
                event = await conn.next_event()
                while isinstance(event, h11.InformationalResponse):
                    event = await conn.next_event()
                if not isinstance(event, h11.Response):
                    raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
            except (OSError, h11.ProtocolError) as exc:
                conn.close()
                if reused and body is not None:
                    continue
                raise UpstreamBroken(str(exc)) from None
            break
        await self._relay(conn, event, send)

    async def _relay(self, conn: Upstream, response: h11.Response, send) -> None:
        done = False
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers
                                    if k not in _HOP_BY_HOP]})
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Data):
                    await send({"type": "http.response.body", "body": bytes(event.data),
                                "more_body": True})
                elif isinstance(event, h11.EndOfMessage):
                    await send({"type": "http.response.body", "body": b""})
                    done = True
                    return
                else:  # ConnectionClosed mid-body: cut the response short
                    await send({"type": "http.response.body", "body": b""})
                    return
        except (OSError, h11.ProtocolError):
            await send({"type": "http.response.body", "body": b""})
        finally:
            if done:
                self._release(conn)
            else:
                conn.close()


async def _simple(send, status: int, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        *headers, (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


capability = Capability(
    name="command",
    loader="capabilities.command:load",
    detect=detect,
    isolation="auto",
    priority=30,
    description="any program that serves HTTP on $PORT (watt.command.json)",
)
