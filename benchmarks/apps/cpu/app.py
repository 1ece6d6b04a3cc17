"""ASGI app of the CPU scaling scenario: every GET runs work.crunch() in the handler.

The handler blocks its worker's loop on purpose: one worker serves one request at a
time, so requests/s measures how many workers compute at once.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from work import crunch

Message = MutableMapping[str, Any]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
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
    body = str(crunch()).encode("ascii")
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
