"""Answers with what it was given: headers, client, scheme, HTTP version (edge tests)."""

import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":  # accept, say what was seen, close
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
            "scheme": scope["scheme"], "query": scope["query_string"].decode(),
            "subprotocols": scope.get("subprotocols", [])})})
        await send({"type": "websocket.close", "code": 1000})
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
