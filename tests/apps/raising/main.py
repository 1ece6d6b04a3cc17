"""An ASGI app whose requests fail on purpose, for the exception spans of
tests/test_trace_exporters.py: ``/boom`` raises; ``/relay?target=x`` calls
``x``'s ``/boom`` over the mesh and raises in its turn when that failed."""

import httpx


class RelayedFailure(Exception):
    pass


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"] == "/boom":
        raise ValueError("the back end broke")
    if scope["path"] == "/relay":
        target = scope["query_string"].decode().partition("target=")[2]
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://{target}/boom")
        raise RelayedFailure(f"{target} answered {reply.status_code}")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
