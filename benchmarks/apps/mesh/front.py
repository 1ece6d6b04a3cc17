"""Application A of the mesh benchmark: one route per way of calling application B.

A bare ASGI 3 callable (no framework, so routing costs one dict lookup) run in
all three setups of ``benchmarks/mesh.py``; the setup decides which routes work:

- ``/direct``           answers "ok" itself: the cost of reaching A at all, subtracted
                        from every other route to get the cost of the hop alone;
- ``/fetch``            ``await watt.mesh.fetch(BACK_URL)``: Watt's lean mesh path
                        (only inside a Watt worker);
- ``/httpx``            one module-level ``httpx.AsyncClient()``, reused: inside Watt it
                        reaches ``back.plt.local`` through the mesh with no code change,
                        under uvicorn it goes over loopback TCP;
- ``/aiohttp``          one ``aiohttp.ClientSession`` made at lifespan start-up, only when
                        ``MESH_BENCH_AIOHTTP=1`` (aiohttp is never imported otherwise, so
                        the Watt worker stays a pure subinterpreter);
- ``/inprocess``        ``back.app`` called as an ASGI callable in this very process and
                        loop (build the scope, collect the messages): the floor;
- ``/inprocess-httpx``  the same through ``httpx.ASGITransport``: httpx's own cost with
                        no network and no mesh, to tell the client's cost from the hop's.

Every call route answers with B's status and body; a failed call answers 502 with
the error, so the load generator counts it as a non-2xx answer instead of a fast one.

Environment: ``MESH_BENCH_BACK_URL`` (default ``http://back.plt.local/``) is where B
is; ``MESH_BENCH_AIOHTTP=1`` enables ``/aiohttp``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import back
import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BACK_URL = os.environ.get("MESH_BENCH_BACK_URL", "http://back.plt.local/")
WANT_AIOHTTP = os.environ.get("MESH_BENCH_AIOHTTP") == "1"

# One client for the whole life of the application, as a real service would keep
# one: the benchmark measures a call, not building a client and a connection pool.
_httpx_client = httpx.AsyncClient()
_inprocess_httpx_client = httpx.AsyncClient(
    transport=httpx.ASGITransport(app=back.app), base_url="http://back"
)
_aiohttp_session: Any = None  # aiohttp.ClientSession, made inside the running loop

_TEXT = b"text/plain; charset=utf-8"
_OK = b"ok"


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", _TEXT), (b"content-length", str(len(body)).encode("ascii"))]


_OK_HEADERS = _headers(_OK)


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = _OK_HEADERS if body is _OK else _headers(body)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def call_asgi(asgi_app: Callable, path: str = "/") -> tuple[int, bytes]:
    """Call an ASGI app in-process with a bodiless GET and collect ``(status, body)``.

    The smallest honest in-process call: a fresh scope, a ``receive`` that gives the
    empty request body once, a ``send`` that keeps the status and the body chunks.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"back")],
        "client": ("127.0.0.1", 0),
        "server": ("back", 80),
    }
    sent_request = False
    status = 500
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await asgi_app(scope, receive, send)
    return status, b"".join(chunks)


async def _via_fetch() -> tuple[int, bytes]:
    import watt.mesh

    response = await watt.mesh.fetch(BACK_URL)
    return response.status, response.body


async def _via_httpx() -> tuple[int, bytes]:
    response = await _httpx_client.get(BACK_URL)
    return response.status_code, response.content


async def _via_aiohttp() -> tuple[int, bytes]:
    if _aiohttp_session is None:
        raise RuntimeError("/aiohttp needs MESH_BENCH_AIOHTTP=1 and aiohttp installed")
    async with _aiohttp_session.get(BACK_URL) as response:
        return response.status, await response.read()


async def _via_inprocess() -> tuple[int, bytes]:
    return await call_asgi(back.app)


async def _via_inprocess_httpx() -> tuple[int, bytes]:
    response = await _inprocess_httpx_client.get("/")
    return response.status_code, response.content


CALLS = {
    "/fetch": _via_fetch,
    "/httpx": _via_httpx,
    "/aiohttp": _via_aiohttp,
    "/inprocess": _via_inprocess,
    "/inprocess-httpx": _via_inprocess_httpx,
}


async def _lifespan(receive: Receive, send: Send) -> None:
    global _aiohttp_session
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                if WANT_AIOHTTP:
                    import aiohttp

                    _aiohttp_session = aiohttp.ClientSession()
            except Exception as exc:  # report it as a failed start-up, with the reason
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _aiohttp_session is not None:
                await _aiohttp_session.close()
            await _httpx_client.aclose()
            await _inprocess_httpx_client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route by path; see the module docstring for what each route measures."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/direct" or path == "/":
        await _reply(send, 200, _OK)
        return
    call = CALLS.get(path)
    if call is None:
        await _reply(send, 404, b"not found")
        return
    try:
        status, body = await call()
    except Exception as exc:  # the load generator must see a failure, not a fast answer
        await _reply(send, 502, f"{path}: {type(exc).__name__}: {exc}".encode())
        return
    await _reply(send, status, _OK if body == _OK else body)
