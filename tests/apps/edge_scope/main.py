"""Answers with what it was given: headers, client, scheme, HTTP version (edge tests)."""

import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].replace("lifespan.", "lifespan.") + ".complete"
            await send({"type": kind})
            if message["type"] == "lifespan.shutdown":
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = json.dumps({
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "client": scope.get("client"), "scheme": scope["scheme"],
        "http_version": scope["http_version"], "path": scope["path"],
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-total", b"7")]})
    await send({"type": "http.response.body", "body": body})
