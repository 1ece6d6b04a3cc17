"""The management API's server: h11 over asyncio's unix server, on the runtime's loop.

Served with ``asyncio.start_unix_server`` and h11 rather than a second
hypercorn: the socket is bound, chmod-ed and listening when :meth:`start`
returns (hypercorn has no "bound" event and applies ``umask`` process-wide,
racing worker threads); :meth:`stop` is immediate and bounded; and a local
JSON API needs none of hypercorn's HTTP/2, WebSocket or lifespan machinery.
The API itself (:class:`~watt.management.api.ManagementApp`) is a plain ASGI
callable; this module only carries HTTP/1.1 to and from it.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import os
import socket
from pathlib import Path
from urllib.parse import unquote

import h11
from loguru import logger

from ..errors import WattError
from .api import MAX_BODY, ManagementApp, error_body
from .sockets import ensure_private_dir


class ManagementServer:
    """Serves :class:`ManagementApp` on ``<socket_dir>/<pid>.sock`` on the runtime's loop."""

    def __init__(self, runtime, *, directory: Path | None = None, tcp=None) -> None:
        self.runtime = runtime
        self.app = ManagementApp(runtime)
        self.directory = directory
        self.path: Path | None = None
        self.tcp = tcp  # config ManagementApiConfig: also serve on hostname:port
        self.tcp_url: str | None = None
        self._server: asyncio.Server | None = None
        self._tcp_server: asyncio.Server | None = None
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
        self.app.socket = str(path)
        logger.debug(f"management API on {path}")
        if self.tcp is not None:
            await self._start_tcp()

    async def _start_tcp(self) -> None:
        """The same API on TCP; every request must carry ``Authorization: Bearer
        <token>`` (the unix socket needs none: its file mode is the check)."""
        expected = b"Bearer " + self.tcp.token.encode()
        try:
            self._tcp_server = await asyncio.start_server(
                functools.partial(self._connection, token=expected), self.tcp.hostname,
                self.tcp.port)
        except OSError as exc:
            raise WattError(f"cannot serve the management API on {self.tcp.hostname}:"
                            f"{self.tcp.port}: {exc}", code="WATT_MANAGEMENT_SOCKET") from exc
        host, port = self._tcp_server.sockets[0].getsockname()[:2]
        self.tcp_url = f"http://{host}:{port}"
        logger.info(f"management API also at {self.tcp_url} (bearer token required)")

    async def stop(self) -> None:
        if (dashboard := getattr(self.app, "dashboard", None)) is not None:
            self.app.dashboard = None  # its own listener (watt admin)
            await dashboard.stop()
        if self._tcp_server is not None:
            self._tcp_server.close()
            self._tcp_server = None
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
                          writer: asyncio.StreamWriter, token: bytes | None = None) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._one_request(conn, reader, writer, token):
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _respond(conn, writer, 400,
                               error_body("WATT_MANAGEMENT_BAD_REQUEST", str(exc)))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _one_request(self, conn: h11.Connection, reader, writer,
                           token: bytes | None = None) -> bool:
        """Serve one request; False when the connection is done."""
        request = await _next_event(conn, reader)
        if not isinstance(request, h11.Request):
            return False
        if token is not None and not hmac.compare_digest(
                dict(request.headers).get(b"authorization", b""), token):
            await _respond(conn, writer, 401, error_body(
                "WATT_MANAGEMENT_UNAUTHORIZED", "a bearer token is required on TCP "
                "(Authorization: Bearer <managementApi.token>)"))
            return False
        length = dict(request.headers).get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY:
            await _respond(conn, writer, 413, error_body(
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
                await _respond(conn, writer, 413, error_body(
                    "WATT_MANAGEMENT_BAD_REQUEST", f"request body larger than {MAX_BODY} bytes"))
                return False
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": request.method.decode("ascii"), "scheme": "http",
                 "path": unquote(path), "raw_path": path.encode("latin-1"),
                 "query_string": query.encode("latin-1"),
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
                if request.method != b"HEAD":  # HEAD: the headers alone (h11 refuses a body)
                    writer.write(conn.send(h11.Data(data=message.get("body", b""))))
                if not message.get("more_body"):
                    writer.write(conn.send(h11.EndOfMessage()))
                # Flushed before the app acts on it (stop); a streamed answer waits
                # for a slow reader and learns here that it went away.
                await writer.drain()

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
