"""The entrypoint, a bare WSGI callable (no framework), served through Watt's
WSGI-to-ASGI bridge on a pool of threads.

    /            plain text
    /greet       calls the greeter application through the mesh
"""

import json
from urllib.parse import parse_qs

import httpx


def respond(start_response, status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        return respond(start_response, "200 OK",
                       b"Hello from a plain WSGI app, inside Watt. Try /greet?name=Ada\n",
                       "text/plain; charset=utf-8")
    if path == "/greet":
        name = parse_qs(environ["QUERY_STRING"]).get("name", ["world"])[0]
        # WSGI code runs on a pool thread, so a synchronous client works; greeter.plt.local
        # is answered over an in-memory channel, not the network.
        reply = httpx.get("http://greeter.plt.local/hello", params={"name": name})
        body = json.dumps({"via": "mesh", "greeter": reply.json()}).encode()
        return respond(start_response, "200 OK", body, "application/json")
    return respond(start_response, "404 Not Found", b"not found\n", "text/plain")
