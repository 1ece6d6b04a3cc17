"""A plain ASGI application that the Django project calls through the mesh."""
import json
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    name = parse_qs(scope["query_string"].decode()).get("name", ["world"])[0]
    body = json.dumps({"greeting": f"Hello, {name}!", "from": "greeter"}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
