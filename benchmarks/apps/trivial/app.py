"""The trivial application of the entrypoint benchmark: a bare ASGI 3 callable.

No framework, no routing, pre-built headers: the app's own cost should be as
close to zero as possible, so that the benchmark measures the server in front of
it (Watt's entrypoint and channel, or uvicorn) and nothing else. Both servers run
this very module, so any cost it has is paid equally on both sides of the ratio.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"hello, world"

# Header lists are built once; the message dicts are fresh per request, because a
# server may keep or alter a message it was given and the next request must not see it.
_OK_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode("ascii")),
]
_NOT_ALLOWED = b"method not allowed"
_NOT_ALLOWED_HEADERS = [
    (b"allow", b"GET, HEAD"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_NOT_ALLOWED)).encode("ascii")),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every GET with 200 "hello, world"; complete lifespan startup and shutdown.

    The lifespan scope is handled (rather than left to fail) so that a server that
    runs lifespan by default, as Watt and uvicorn do, starts the app cleanly and
    logs no lifespan error that a reader could mistake for a benchmark problem.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method = scope["method"]
    if method in {"GET", "HEAD"}:
        await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
        body = BODY if method == "GET" else b""
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.start", "status": 405, "headers": _NOT_ALLOWED_HEADERS})
        await send({"type": "http.response.body", "body": _NOT_ALLOWED})
