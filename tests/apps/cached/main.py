"""An ASGI app for the HTTP cache tests: responses whose caching headers the test
chooses, a count of what this worker answered, mesh calls and invalidation."""

import _interpreters
import json
import os
from urllib.parse import parse_qsl

import watt.cache
import watt.mesh

NAME = os.environ.get("APP_NAME", "cached")
_served: dict[str, int] = {}  # path -> responses this worker generated
_versions: dict[str, int] = {}  # path -> version, bumped by /bump


async def _send(send, status, headers, body):
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = parse_qsl(scope["query_string"].decode())
    params = dict(query)
    request_headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    if path == "/fetch":  # a mesh GET, reported whole
        headers = [tuple(h.split(":", 1)) for k, h in query if k == "h"]
        reply = await watt.mesh.fetch(params["url"], method=params.get("method", "GET"),
                                      headers=headers)
        return await _send(send, 200, [("content-type", "application/json")], json.dumps({
            "caller": _interpreters.get_current()[0], "status": reply.status,
            "body": reply.body.decode("latin-1"),
            "headers": {k.decode(): v.decode() for k, v in reply.headers}}).encode())
    if path == "/invalidate":
        watt.cache.invalidate(keys=[v for k, v in query if k == "key"] or None,
                              tags=[v for k, v in query if k == "tag"] or None)
        return await _send(send, 200, [], b"ok")
    if path == "/ext-store":  # an external call's response, offered to the store
        watt.cache.store("GET", params["url"], [("accept", "*/*")], 200,
                         [("Cache-Control", "max-age=60"), ("X-Cache-Tags", "ext")],
                         b"external body")
        return await _send(send, 200, [], b"stored")
    if path == "/ext-lookup":
        hit = await watt.cache.lookup("GET", params["url"], {"accept": "*/*"})
        answer = {"hit": hit is not None, "caller": _interpreters.get_current()[0]}
        if hit is not None:
            status, headers, body = hit
            answer.update(status=status, body=body.decode(),
                          headers={k.decode(): v.decode() for k, v in headers})
        return await _send(send, 200, [("content-type", "application/json")],
                           json.dumps(answer).encode())
    if path.startswith("/stream/"):  # a cacheable answer in several body messages
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"cache-control", b"max-age=600"), (b"content-type", b"text/plain")]})
        _served[path] = _served.get(path, 0) + 1
        size = int(params.get("size", 10))
        for i in range(3):
            await send({"type": "http.response.body", "more_body": i < 2,
                        "body": f"{_served[path]}:{i}:".encode() + b"y" * size})
        return
    if path == "/bump":  # the content of a path changes (for revalidation)
        _versions[params["path"]] = _versions.get(params["path"], 0) + 1
        return await _send(send, 200, [], b"bumped")
    if path == "/counts":
        return await _send(send, 200, [("content-type", "application/json")],
                           json.dumps(_served).encode())
    # Anything else: a response with the headers asked for in ?h=name:value, and an
    # ETag that changes with /bump; If-None-Match is honoured (304).
    version = _versions.get(path, 0)
    etag = f'"{path}-v{version}"'
    headers = [tuple(h.split(":", 1)) for k, h in query if k == "h"]
    if path.startswith("/cached/"):  # fresh for 10 minutes, tagged "cached" and its name
        headers += [("cache-control", "max-age=600"),
                    ("x-cache-tags", "cached, " + path.rsplit("/", 1)[1])]
    if "etag" in params:
        headers.append(("etag", etag))
        if request_headers.get("if-none-match") == etag:
            _served[path + ":304"] = _served.get(path + ":304", 0) + 1
            return await _send(send, 304, headers, b"")
    _served[path] = _served.get(path, 0) + 1
    body = json.dumps({"app": NAME, "interpreter": _interpreters.get_current()[0],
                       "pid": os.getpid(), "path": path, "version": version,
                       "served": _served[path], "size": "x" * int(params.get("size", 0))})
    await _send(send, 200, [("content-type", "application/json"), *headers], body.encode())
