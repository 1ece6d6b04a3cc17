"""An ASGI app that shows what it was given: the serverless tests' entrypoint."""

import hashlib
import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/binary":  # the body back, as bytes
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": body})
        return
    headers = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode(), []).append(value.decode())
    payload = {"method": scope["method"], "path": scope["path"],
               "query": scope["query_string"].decode(), "headers": headers,
               "body": body.decode("utf-8", "replace"),
               "sha256": hashlib.sha256(body).hexdigest(), "client": scope["client"][0],
               "scheme": scope["scheme"], "pid": os.getpid()}
    await send({"type": "http.response.start", "status": 201 if body else 200, "headers": [
        (b"content-type", b"application/json"), (b"set-cookie", b"session=abc; Path=/"),
        (b"set-cookie", b"theme=dark"), (b"x-multi", b"a"), (b"x-multi", b"b")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
