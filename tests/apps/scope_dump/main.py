"""Answers with the whole ASGI scope it was given, and the body it read (direct-mode tests)."""

import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    seen = {key: value for key, value in scope.items() if key not in ("headers", "state")}
    seen["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    seen["raw_path"] = scope["raw_path"].decode("latin-1")
    seen["query_string"] = scope["query_string"].decode("latin-1")
    seen["state"] = dict(scope.get("state", {}))
    seen["body"] = body.decode("latin-1")
    payload = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})
