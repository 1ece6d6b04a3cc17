"""A bare WSGI callable, reached only at http://greeter.plt.local."""

import json
from urllib.parse import parse_qs


def application(environ, start_response):
    if environ["PATH_INFO"] != "/hello":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    name = parse_qs(environ["QUERY_STRING"]).get("name", ["world"])[0]
    body = json.dumps({"greeting": f"Hello, {name}!", "from": "greeter"}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
