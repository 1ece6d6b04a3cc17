"""The management API: a small JSON HTTP API on a unix socket only this user can reach.

The ``watt`` commands (``ps``, ``applications``, ``inject``, ``restart``,
``stop``) talk to a running runtime through it.  Each runtime listens on
``$XDG_RUNTIME_DIR/watt/<pid>.sock`` (or ``/tmp/watt-<uid>/<pid>.sock``): the
folder is ours and mode 0700, the socket mode 0600, so the kernel's file
permissions are the authentication and no token or TCP port is needed.

Served with ``asyncio.start_unix_server`` and h11 rather than a second
hypercorn: the socket is bound, chmod-ed and listening when :meth:`start`
returns (hypercorn has no "bound" event and applies ``umask`` process-wide,
racing worker threads); :meth:`stop` is immediate and bounded; and a one-shot
JSON API needs none of hypercorn's HTTP/2, WebSocket or lifespan machinery.
The API itself (:class:`ManagementApp`) is a plain ASGI callable, testable
without a socket.  The client side (:func:`list_runtimes`,
:func:`find_runtime`, :func:`call`) uses only the standard library.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import http.client
import json
import os
import select
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
from loguru import logger

from .errors import WattError

PREFIX = "/api/v1"
MAX_BODY = 16 * 1024 * 1024  # an inject body; larger requests get 413
_STATUS_OF = {"WATT_MESH_UNKNOWN_APP": 404, "WATT_MANAGEMENT_NOT_FOUND": 404,
              "WATT_MANAGEMENT_BAD_REQUEST": 400, "WATT_RUNTIME_STATE": 409}


class ManagementUnreachable(WattError):
    """The socket exists but no runtime answered on it; ``refused`` means nobody
    listens any more (a stale socket left by a process that died)."""

    code = "WATT_MANAGEMENT_UNREACHABLE"

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


# -- where the sockets live ---------------------------------------------------------------
def socket_dir() -> Path:
    """``$XDG_RUNTIME_DIR/watt`` when XDG_RUNTIME_DIR is set, else ``/tmp/watt-<uid>``."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "watt"
    return Path("/tmp") / f"watt-{os.getuid()}"


def check_private_dir(path: Path) -> None:
    """Refuse a folder that is a symlink, not ours, or reachable by others: a socket
    in it could be replaced or read by another user."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise WattError(f"cannot inspect {path}: {exc}", code="WATT_MANAGEMENT_UNSAFE_DIR") from exc
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "it is not a folder (a symlink or a file?)"
    elif info.st_uid != os.getuid():
        problem = f"it is owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
    elif info.st_mode & 0o077:
        problem = f"its mode is {stat.S_IMODE(info.st_mode):04o}, not 0700"
    if problem:
        raise WattError(f"refusing to use {path} for the management socket: {problem}; "
                        "remove it (or fix it with chmod 700), or set managementApi to false",
                        code="WATT_MANAGEMENT_UNSAFE_DIR")


def ensure_private_dir(path: Path | None = None) -> Path:
    """Create the socket folder mode 0700, or check the existing one (see above)."""
    path = path or socket_dir()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise WattError(f"cannot create the management socket folder {path}: {exc}",
                        code="WATT_MANAGEMENT_SOCKET") from exc
    check_private_dir(path)
    return path


# -- the API, a plain ASGI app --------------------------------------------------------------
class ManagementApp:
    """``/api/v1/...`` over a :class:`~watt.runtime.Runtime`; every answer is JSON, every
    error ``{"code", "message"}`` with a 4xx/5xx status."""

    def __init__(self, runtime, stop_process: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.stop_process = stop_process or self._sigterm
        self._tasks: set[asyncio.Task] = set()

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":  # lifespan and the rest: nothing to do
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        after = None
        try:
            status, payload, after = await self._route(scope["method"], scope["path"], body)
        except WattError as exc:
            status = getattr(exc, "status", None) or _STATUS_OF.get(exc.code, 500)
            payload = _error(exc.code, exc.message)
        except Exception as exc:  # a bug: answer, and keep the traceback in the log
            logger.opt(exception=exc).error(f"management API {scope['method']} {scope['path']}")
            status, payload = 500, _error("WATT_ERROR", f"{type(exc).__name__}: {exc}")
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})
        if after is not None:
            after()

    async def _route(self, method: str, path: str, body: bytes):
        """``(status, payload, after)``: ``after`` runs once the answer is sent."""
        route = self._match(path, body)
        if route is None:
            raise WattError(f"no such endpoint: {path} (see docs/cli.md)",
                            code="WATT_MANAGEMENT_NOT_FOUND")
        allowed, handler = route
        if method != allowed:
            raise _bad(f"{path} takes {allowed}, not {method}", status=405)
        result = handler()
        if asyncio.iscoroutine(result):
            result = await result
        return result if isinstance(result, tuple) else (200, result, None)

    def _match(self, path: str, body: bytes):
        if not path.startswith(PREFIX + "/"):
            return None
        match path[len(PREFIX) + 1:].rstrip("/").split("/"):
            case ["runtime"]:
                return "GET", self.runtime.info
            case ["applications"]:
                return "GET", self.runtime.applications
            case ["stop"]:
                return "POST", self._stop
            case ["applications", app_id, "restart"]:
                return "POST", functools.partial(self._restart, app_id)
            case ["applications", app_id, "inject"]:
                return "POST", functools.partial(self._inject, app_id, body)
        return None

    async def _restart(self, app_id: str) -> dict:
        await self.runtime.restart(app_id)
        return next(a for a in self.runtime.applications() if a["id"] == app_id)

    async def _inject(self, app_id: str, body: bytes) -> dict:
        try:
            request = json.loads(body or b"{}")
        except ValueError as exc:
            raise _bad(f"the body is not JSON: {exc}") from exc
        if not isinstance(request, dict):
            raise _bad('the body must be an object {"method", "path", "headers", "body"}')
        method, path = request.get("method", "GET"), request.get("path", "/")
        headers, content = request.get("headers") or {}, request.get("body") or ""
        if not isinstance(method, str) or not method.isalpha():
            raise _bad(f"`method` must be an HTTP method name, got {method!r}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise _bad(f"`path` must start with '/', got {path!r}")
        if isinstance(headers, dict):
            headers = list(headers.items())
        if not isinstance(headers, list) or not all(
                isinstance(h, list | tuple) and len(h) == 2
                and all(isinstance(x, str) for x in h) for h in headers):
            raise _bad("`headers` must be an object of strings or a list of [name, value]")
        if not isinstance(content, str):
            raise _bad("`body` must be a string (base64 with \"base64\": true)")
        if request.get("base64"):
            try:
                data = base64.b64decode(content, validate=True)
            except binascii.Error as exc:
                raise _bad(f"`body` is not valid base64: {exc}") from exc
        else:
            data = content.encode()
        reply = await self.runtime.inject(app_id, method.upper(), path, headers=headers,
                                          body=data)
        answer = {"status": reply.status,
                  "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                              for k, v in reply.headers]}
        try:
            answer.update(body=reply.body.decode("utf-8"), base64=False)
        except UnicodeDecodeError:
            answer.update(body=base64.b64encode(reply.body).decode("ascii"), base64=True)
        return answer

    def _stop(self):
        limit = self.runtime.config.graceful_shutdown.runtime / 1000
        return 202, {"pid": os.getpid(), "stopping": True, "timeout": limit}, self.stop_process

    def _sigterm(self) -> None:
        """Stop as on SIGTERM: ``watt.run`` turns it into a graceful shutdown.  A host
        that installed no SIGTERM handler (a runtime embedded in a test or a script)
        would die of it, so there the runtime alone is stopped."""
        loop = asyncio.get_running_loop()
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            task = loop.create_task(self.runtime.stop())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)


def _error(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def _bad(message: str, status: int = 400) -> WattError:
    error = WattError(message, code="WATT_MANAGEMENT_BAD_REQUEST")
    error.status = status
    return error


# -- the server: h11 over asyncio's unix server ------------------------------------------
class ManagementServer:
    """Serves :class:`ManagementApp` on ``<socket_dir>/<pid>.sock`` on the runtime's loop."""

    def __init__(self, runtime, *, directory: Path | None = None) -> None:
        self.runtime = runtime
        self.app = ManagementApp(runtime)
        self.directory = directory
        self.path: Path | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        directory = ensure_private_dir(self.directory)
        path = directory / f"{os.getpid()}.sock"
        if len(os.fsencode(path)) > 107:
            raise WattError(f"the management socket path {path} is longer than a unix socket "
                            "allows (107 bytes): set XDG_RUNTIME_DIR to a shorter folder",
                            code="WATT_MANAGEMENT_SOCKET")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            path.unlink(missing_ok=True)  # a previous process with our pid died uncleanly
            sock.bind(str(path))
            os.chmod(path, 0o600)  # before listen(): nobody can connect before this
            self._server = await asyncio.start_unix_server(self._connection, sock=sock)
        except OSError as exc:
            sock.close()
            path.unlink(missing_ok=True)
            raise WattError(f"cannot serve the management API on {path}: {exc}",
                            code="WATT_MANAGEMENT_SOCKET") from exc
        self.path = path
        logger.debug(f"management API on {path}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(self._connections, timeout=5)
            self._server = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._one_request(conn, reader, writer):
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _respond(conn, writer, 400, _error("WATT_MANAGEMENT_BAD_REQUEST", str(exc)))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _one_request(self, conn: h11.Connection, reader, writer) -> bool:
        """Serve one request; False when the connection is done."""
        request = await _next_event(conn, reader)
        if not isinstance(request, h11.Request):
            return False
        length = dict(request.headers).get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY:
            await _respond(conn, writer, 413, _error(
                "WATT_MANAGEMENT_BAD_REQUEST", f"request body larger than {MAX_BODY} bytes"))
            return False
        body = bytearray()
        while True:
            event = await _next_event(conn, reader)
            if event is None:
                return False
            if isinstance(event, h11.EndOfMessage):
                break
            body += event.data
            if len(body) > MAX_BODY:
                await _respond(conn, writer, 413, _error(
                    "WATT_MANAGEMENT_BAD_REQUEST", f"request body larger than {MAX_BODY} bytes"))
                return False
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": request.method.decode("ascii"), "scheme": "http", "path": path,
                 "raw_path": path.encode("latin-1"), "query_string": query.encode("latin-1"),
                 "root_path": "", "headers": list(request.headers), "client": None,
                 "server": None}
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                writer.write(conn.send(h11.Response(status_code=message["status"],
                                                    headers=message.get("headers", []))))
            elif message["type"] == "http.response.body":
                writer.write(conn.send(h11.Data(data=message.get("body", b""))))
                if not message.get("more_body"):
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()  # flushed before the app acts on it (stop)

        await self.app(scope, receive, send)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader):
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        return None if isinstance(event, h11.ConnectionClosed) else event


async def _respond(conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                   payload: dict) -> None:
    data = json.dumps(payload).encode()
    writer.write(conn.send(h11.Response(status_code=status, headers=[
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (b"connection", b"close")])))
    writer.write(conn.send(h11.Data(data=data)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


# -- the client side (synchronous, standard library only) -------------------------------
class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(socket_path: str | os.PathLike, method: str, path: str, payload: Any = None, *,
            timeout: float | None = 10.0) -> tuple[int, Any]:
    """One API call: ``(status, decoded JSON)``; :class:`ManagementUnreachable` when the
    runtime does not answer."""
    conn = _UnixConnection(os.fspath(socket_path), timeout)
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"content-type": "application/json"} if body is not None else {}
    try:
        try:
            conn.request(method, path, body=body, headers=headers)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise ManagementUnreachable(f"nobody listens on {socket_path} ({exc.strerror})",
                                        refused=True) from exc
        response = conn.getresponse()
        status, data = response.status, response.read()
    except ManagementUnreachable:
        raise
    except (OSError, http.client.HTTPException) as exc:
        raise ManagementUnreachable(
            f"the runtime on {socket_path} did not answer: {exc or type(exc).__name__}") from exc
    finally:
        conn.close()
    try:
        return status, json.loads(data)
    except ValueError as exc:
        raise ManagementUnreachable(f"the runtime on {socket_path} sent no JSON ({status}): "
                                    f"{data[:200]!r}") from exc


def call(socket_path: str | os.PathLike, method: str, path: str, payload: Any = None, *,
         timeout: float | None = 10.0) -> Any:
    """:func:`request`, raising the runtime's ``{"code", "message"}`` as a WattError."""
    status, data = request(socket_path, method, path, payload, timeout=timeout)
    if status >= 400:
        if isinstance(data, dict) and "code" in data:
            raise WattError(data.get("message", ""), code=data["code"])
        raise WattError(f"the runtime answered {status}: {data!r}")
    return data


def list_runtimes(directory: Path | None = None, *, timeout: float = 5.0) -> list[dict]:
    """Every runtime of this user, by pid: its ``info()`` plus ``socket``.  A socket
    nobody listens on is stale and removed; one that does not answer in time is
    listed with an ``error``."""
    directory = directory or socket_dir()
    try:
        check_private_dir(directory)
    except FileNotFoundError:
        return []
    found = []
    for path in sorted(directory.glob("*.sock"), key=_pid_of):
        try:
            info = call(path, "GET", PREFIX + "/runtime", timeout=timeout)
        except ManagementUnreachable as exc:
            if exc.refused:
                path.unlink(missing_ok=True)
                continue
            info = {"pid": _pid_of(path), "error": exc.message}
        except WattError as exc:
            info = {"pid": _pid_of(path), "error": str(exc)}
        found.append(dict(info, socket=str(path)))
    return found


def find_runtime(pid: int | None = None, directory: Path | None = None) -> dict:
    """The runtime a command talks to: the one with ``pid``, else the only one running."""
    directory = directory or socket_dir()
    if pid is not None:
        path = directory / f"{pid}.sock"
        if path.exists():
            check_private_dir(directory)
            try:
                return dict(call(path, "GET", PREFIX + "/runtime"), socket=str(path))
            except ManagementUnreachable as exc:
                if not exc.refused:
                    raise
                path.unlink(missing_ok=True)
        running = [r["pid"] for r in list_runtimes(directory)]
        raise WattError(f"no Watt runtime with pid {pid} is running"
                        + (f" (running: {', '.join(map(str, running))})" if running else ""),
                        code="WATT_MANAGEMENT_NO_RUNTIME")
    runtimes = list_runtimes(directory)
    if not runtimes:
        raise WattError(f"no Watt runtime is running (no socket in {directory}): start one "
                        "with `watt start`", code="WATT_MANAGEMENT_NO_RUNTIME")
    if len(runtimes) > 1:
        pids = ", ".join(str(r["pid"]) for r in runtimes)
        raise WattError(f"several Watt runtimes are running (pids {pids}): give the PID",
                        code="WATT_MANAGEMENT_AMBIGUOUS")
    if "error" in runtimes[0]:
        raise ManagementUnreachable(runtimes[0]["error"])
    return runtimes[0]


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has ended (a zombie counts as ended); False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)  # readable once the process has exited
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _pid_of(path: Path) -> int:
    return int(path.stem) if path.stem.isdigit() else -1
