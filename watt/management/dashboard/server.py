"""The dashboard's listener: the page, its assets and the management API over TCP.

A browser cannot reach the management API's unix socket, so ``watt admin``
asks the runtime (``POST /api/v1/dashboard``) to listen on 127.0.0.1 and a
free port.  Whoever holds the random token may use it: the URL printed
carries it once (``/?token=...``), the answer sets it as an HttpOnly,
SameSite=Strict cookie and redirects to ``/``, so the token leaves the
address bar and no script can read it.  ``Authorization: Bearer <token>``
works as well (scripts, tests).  A request that changes something must also
carry ``X-Watt-Dashboard: 1``, which no other site can make a browser send.

The same h11 connection code as the unix socket serves it
(:class:`~watt.management.server.ManagementServer`); only the ASGI app in
front of the API differs (:class:`DashboardApp`).  While it is on, the
runtime's span sink keeps a memory exporter, which ``GET /traces`` reads.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from loguru import logger

from ...errors import WattError
from ...observability.tracing import MemoryExporter
from ..api import PREFIX, ManagementApp, error_body
from ..server import ManagementServer

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "watt_dashboard"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
_SAFE_METHODS = ("GET", "HEAD")
_PAGE_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                 b"img-src 'self' data:; connect-src 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")]


class DashboardApp:
    """ASGI: ``/`` the page, ``/static/<file>`` its assets, ``/api/v1/...`` the API;
    all behind the token."""

    def __init__(self, api: ManagementApp, token: str) -> None:
        self.api = api
        self.token = token
        self._bearer = b"Bearer " + token.encode()
        # Served by name from this list only: a path never reaches the file system.
        self.files = {p.name: p for p in STATIC.iterdir() if p.is_file()} if STATIC.is_dir() \
            else {}

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        headers = dict(scope["headers"])
        by_header = hmac.compare_digest(headers.get(b"authorization", b""), self._bearer)
        by_cookie = self._cookie_ok(headers.get(b"cookie", b""))
        if path == "/" and method in _SAFE_METHODS:
            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            if given is not None:
                if not hmac.compare_digest(given[-1].encode(), self.token.encode()):
                    return await _html(send, 401, "This dashboard link is not valid (any "
                                       "more): run <code>watt admin</code> again.")
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                return await _answer(send, 303, b"", "text/plain",
                                     [(b"location", b"/"), (b"set-cookie", cookie.encode())])
        if not (by_header or by_cookie):
            if path == "/":
                return await _html(send, 401, "Open the URL that <code>watt admin</code> "
                                   "printed: its token lets this browser in.")
            return await _json(send, 401, "WATT_MANAGEMENT_UNAUTHORIZED", "the dashboard "
                               "needs its token (the cookie set by the URL watt admin prints, "
                               "or Authorization: Bearer <token>)")
        if path.startswith(PREFIX + "/"):
            if method not in _SAFE_METHODS and not by_header and \
                    headers.get(b"x-watt-dashboard") != b"1":
                return await _json(send, 403, "WATT_MANAGEMENT_UNAUTHORIZED",
                                   "a change needs the X-Watt-Dashboard: 1 header")
            return await self.api(scope, receive, send)
        if method not in _SAFE_METHODS:
            return await _json(send, 405, "WATT_MANAGEMENT_METHOD_NOT_ALLOWED",
                               f"{path} takes GET")
        name = "index.html" if path == "/" else path.removeprefix("/static/")
        file = self.files.get(name) if path == "/" or path.startswith("/static/") else None
        if file is None:
            return await _json(send, 404, "WATT_MANAGEMENT_NOT_FOUND",
                               f"no such page: {path} (the dashboard is at /)")
        data = await asyncio.to_thread(file.read_bytes)
        await _answer(send, 200, data, _TYPES.get(file.suffix, "application/octet-stream"))

    def _cookie_ok(self, raw: bytes) -> bool:
        if not raw:
            return False
        try:
            morsel = SimpleCookie(raw.decode("latin-1")).get(COOKIE)
        except CookieError:
            return False
        return morsel is not None and hmac.compare_digest(morsel.value.encode(),
                                                          self.token.encode())


async def _answer(send, status: int, data: bytes, media_type: str,
                  extra: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", media_type.encode()), (b"content-length", str(len(data)).encode()),
        *_PAGE_HEADERS, *extra]})
    await send({"type": "http.response.body", "body": data})


async def _json(send, status: int, code: str, message: str) -> None:
    await _answer(send, status, json.dumps(error_body(code, message)).encode(),
                  "application/json")


async def _html(send, status: int, message: str) -> None:
    page = (f'<!doctype html><html lang="en"><meta charset="utf-8"><title>Watt admin</title>'
            f"<p>{message}</p></html>")
    await _answer(send, status, page.encode(), "text/html; charset=utf-8")


class DashboardServer(ManagementServer):
    """The dashboard on ``hostname:port`` (port 0: a free one), on the runtime's loop."""

    def __init__(self, api: ManagementApp, hostname: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(api.runtime)
        self.token = secrets.token_urlsafe(24)
        self.app = DashboardApp(api, self.token)
        self.hostname = hostname
        self.port = port
        self.url: str | None = None
        self._memory: MemoryExporter | None = None

    @staticmethod
    def busy(current: DashboardServer) -> WattError:
        error = WattError(f"the dashboard already runs at {current.hostname}:{current.port}: "
                          "stop it first (DELETE /api/v1/dashboard)",
                          code="WATT_DASHBOARD_UNAVAILABLE")
        error.status = 409
        return error

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._connection, self.hostname,
                                                      self.port)
        except OSError as exc:
            error = WattError(f"the dashboard cannot listen on {self.hostname}:{self.port}: "
                              f"{exc.strerror or exc}", code="WATT_DASHBOARD_UNAVAILABLE")
            error.status = 409
            raise error from exc
        self.port = self._server.sockets[0].getsockname()[1]
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        self.url = f"http://{host}:{self.port}/?token={self.token}"
        sink = self.runtime.tracing
        if sink is not None and sink.memory is None:  # GET /traces reads it
            self._memory = sink.memory = MemoryExporter(2000)
            sink.exporters.append(self._memory)
        logger.info(f"dashboard at http://{host}:{self.port}/ (watt admin prints its link)")

    async def stop(self) -> None:
        await super().stop()
        sink = self.runtime.tracing
        if self._memory is not None and sink is not None:
            sink.exporters.remove(self._memory)
            if sink.memory is self._memory:
                sink.memory = None
            self._memory = None


async def start_configured(runtime, settings) -> DashboardServer:
    """The config's ``dashboard`` (a :class:`~watt.config_dashboard.DashboardConfig`),
    started with the runtime once its management API serves; as ``watt admin`` would."""
    management = runtime.management
    server = DashboardServer(management.app, settings.hostname, settings.port)
    try:
        await server.start()
    except WattError as error:
        error.key, error.file = "dashboard", runtime.config.file
        raise
    management.app.dashboard = server
    return server


def dashboard_line(runtime) -> str:
    """What ``watt start`` prints under its own URL: the dashboard's link, if it is on."""
    management = runtime.management
    server = getattr(management.app, "dashboard", None) if management is not None else None
    return f"Dashboard at {server.url}\n" if server is not None else ""

