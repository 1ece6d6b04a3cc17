"""Application B of the mesh benchmark: answers ``GET /`` with "ok".

A bare ASGI 3 callable with pre-built headers, so that its own cost is close to
zero and the benchmark measures the hop from A to B, not B. The three setups of
``benchmarks/mesh.py`` run this very module: in a Watt subinterpreter (reached at
``http://back.plt.local/``), in its own uvicorn process (reached over loopback),
and imported by ``front.py`` and called in-process.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"ok"
_OK_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode("ascii")),
]


async def lifespan(receive: Receive, send: Send) -> None:
    """Complete startup and shutdown, so no server logs a lifespan error."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """200 "ok" for every HTTP request, whatever the path or method."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": BODY})
