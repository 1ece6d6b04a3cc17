"""The management API as a plain ASGI callable, and the table of its routes.

Every endpoint is one :func:`route`-decorated function of ``(api, request)``
that carries its own OpenAPI operation, so adding an endpoint is one
function in one place: the dispatcher, the 404/405 answers and the document
at ``GET /api/v1/openapi.json`` (``openapi.py``) all read :data:`ROUTES`.
A handler returns JSON-able data (status 200) or a :class:`Reply` (another
status, another media type, a streamed body, something to run once the
answer is sent); it raises a :class:`~watt.errors.WattError` for an error,
which every endpoint answers as JSON ``{"code", "message"}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from loguru import logger

from ..errors import WattError

PREFIX = "/api/v1"
MAX_BODY = 16 * 1024 * 1024  # an inject body; larger requests get 413
#: HTTP status of an error, by code (a WattError may also carry ``status``).
STATUS_OF = {"WATT_MANAGEMENT_UNKNOWN_APP": 404, "WATT_MESH_UNKNOWN_APP": 404,
             "WATT_MANAGEMENT_NOT_FOUND": 404, "WATT_MANAGEMENT_BAD_REQUEST": 400,
             "WATT_MANAGEMENT_METHOD_NOT_ALLOWED": 405, "WATT_RUNTIME_STATE": 409}
_PARAM = re.compile(r"^\{(\w+)\}$")


@dataclass
class Request:
    """One API request as a handler sees it: ``params`` from the path pattern
    (``{id}``), ``query`` parsed (a list of values per name), ``body`` bytes."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes

    def json(self, default: Any = None) -> Any:
        """The body as JSON (``default`` when empty); 400 when it is not JSON."""
        if not self.body.strip():
            return default
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise bad_request(f"the body is not JSON: {exc}") from exc

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of query parameter ``name``."""
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Reply:
    """An answer other than "200 and this JSON": ``payload`` is JSON-encoded unless
    ``body`` (bytes) or ``stream`` (an async iterator of bytes, sent chunked) is
    given; ``after`` runs once the answer has been sent (``POST /stop``)."""

    payload: Any = None
    status: int = 200
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    media_type: str = "application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    after: Callable[[], None] | None = None


Handler = Callable[["ManagementApp", Request], Any]


@dataclass
class Route:
    """``method`` + ``path`` (relative to :data:`PREFIX`, ``{name}`` for a parameter),
    the handler, and its OpenAPI operation object (``openapi.py`` completes it)."""

    method: str
    path: str
    handler: Handler
    operation: dict

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/")

    def match(self, segments: list[str]) -> dict[str, str] | None:
        pattern = self.segments
        if len(pattern) != len(segments):
            return None
        params = {}
        for want, got in zip(pattern, segments, strict=True):
            if name := _PARAM.match(want):
                params[name[1]] = got
            elif want != got:
                return None
        return params


#: Every endpoint, in the order the OpenAPI document lists them.
ROUTES: list[Route] = []


def route(method: str, path: str, *, summary: str, description: str = "",
          responses: dict[int, dict], request_body: dict | None = None,
          parameters: list[dict] | None = None, tags: list[str] | None = None,
          operation_id: str | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated ``handler(api, request)`` for ``method path``.

    ``responses`` are OpenAPI response objects by status (``openapi.json_response``
    builds one); the error answers every route can give (404 for an unknown
    ``{id}``, 400 for a bad body, 500) are added by ``openapi.py``.
    """

    def register(handler: Handler) -> Handler:
        operation = {"operationId": operation_id or handler.__name__.strip("_"),
                     "summary": summary, "responses": responses}
        if description:
            operation["description"] = description
        if request_body is not None:
            operation["requestBody"] = request_body
        if parameters:
            operation["parameters"] = parameters
        if tags:
            operation["tags"] = tags
        if any(r.method == method and r.path == path for r in ROUTES):
            raise ValueError(f"{method} {path} is already a management route")
        ROUTES.append(Route(method, path, handler, operation))
        return handler

    return register


def error_body(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def bad_request(message: str, status: int = 400) -> WattError:
    error = WattError(message, code="WATT_MANAGEMENT_BAD_REQUEST")
    error.status = status
    return error


class ManagementApp:
    """``/api/v1/...`` over a :class:`~watt.runtime.Runtime`: every answer JSON unless
    the endpoint says otherwise, every error ``{"code", "message"}`` with a 4xx/5xx."""

    def __init__(self, runtime, stop_process: Callable[[], None] | None = None,
                 routes: list[Route] | None = None) -> None:
        self.runtime = runtime
        self.stop_process = stop_process or self._sigterm
        self.routes = ROUTES if routes is None else routes
        self.socket: str | None = None  # the server sets it once bound (GET /metadata)
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
        try:
            reply = await self._dispatch(scope, body)
        except WattError as exc:
            status = getattr(exc, "status", None) or STATUS_OF.get(exc.code, 500)
            reply = Reply(error_body(exc.code, exc.message), status,
                          headers=getattr(exc, "headers", []))
        except Exception as exc:  # a bug: answer, and keep the traceback in the log
            logger.opt(exception=exc).error(f"management API {scope['method']} {scope['path']}")
            reply = Reply(error_body("WATT_ERROR", f"{type(exc).__name__}: {exc}"), 500)
        await self._send(reply, send)
        if reply.after is not None:
            reply.after()

    async def _dispatch(self, scope: dict, body: bytes) -> Reply:
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1")
        if not path.startswith(PREFIX + "/"):
            raise WattError(f"no such endpoint: {path} (the API is under {PREFIX}/, "
                            f"described at {PREFIX}/openapi.json)",
                            code="WATT_MANAGEMENT_NOT_FOUND")
        segments = [unquote(s) for s in path[len(PREFIX) + 1:].rstrip("/").split("/")]
        method, allowed = scope["method"], []
        for candidate in self.routes:
            params = candidate.match(segments)
            if params is None:
                continue
            if candidate.method != method:
                allowed.append(candidate.method)
                continue
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                             keep_blank_values=True)
            result = candidate.handler(self, Request(method, path, params, query, body))
            if asyncio.iscoroutine(result):
                result = await result
            return result if isinstance(result, Reply) else Reply(result)
        if allowed:
            error = WattError(f"{path} takes {' or '.join(allowed)}, not {method}",
                              code="WATT_MANAGEMENT_METHOD_NOT_ALLOWED")
            error.headers = [(b"allow", ", ".join(allowed).encode())]
            raise error
        raise WattError(f"no such endpoint: {path} (see {PREFIX}/openapi.json)",
                        code="WATT_MANAGEMENT_NOT_FOUND")

    @staticmethod
    async def _send(reply: Reply, send) -> None:
        headers = [(b"content-type", reply.media_type.encode()), *reply.headers]
        if reply.stream is not None:
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": headers})
            try:
                async for chunk in reply.stream:
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            except ConnectionError:
                raise  # the client went away: nothing more to send
            except Exception as exc:  # the status is sent: log it and end the body
                logger.opt(exception=exc).error("management API: a streamed answer failed")
            finally:
                if (close := getattr(reply.stream, "aclose", None)) is not None:
                    await close()  # the generator's own finally blocks run now
            await send({"type": "http.response.body", "body": b""})
            return
        data = reply.body if reply.body is not None else json.dumps(reply.payload).encode()
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    # -- what the endpoints share ----------------------------------------------------------
    def pool(self, app_id: str):
        """The application ``app_id``'s pool; 404 ``WATT_MANAGEMENT_UNKNOWN_APP`` if none."""
        pool = self.runtime.pools.get(app_id)
        if pool is None:
            known = ", ".join(sorted(self.runtime.pools)) or "none"
            raise WattError(f"no application {app_id!r} in this runtime (known: {known})",
                            code="WATT_MANAGEMENT_UNKNOWN_APP")
        return pool

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
