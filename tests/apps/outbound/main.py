"""App of tests/test_outbound.py: ``/call`` makes one request with one client.

``/call?client=C&url=U[&method=M][&timeout=S][&h=name:value...]`` answers what the
client got: status, body, a few headers, or the error (type names, message,
``code`` of a WATT error).  ``/echo`` answers the headers it received,
``/seen`` what the ``hooks:record`` interceptor saw, ``/invalidate?url=U``
drops a URL from the runtime's HTTP cache.
"""

import asyncio
import json
import os
from urllib.parse import parse_qs

import hooks

NAME = os.environ.get("APP_NAME", "outbound")


def _result(status, body: bytes, headers) -> dict:
    return {"status": status, "body": body.decode("utf-8", "replace")[:4000],
            "from": headers.get("x-from")}


async def via_httpx(url, method, headers, timeout):
    import httpx

    async with httpx.AsyncClient(**timeout) as client:
        r = await client.request(method, url, headers=headers)
        return _result(r.status_code, r.content, r.headers)


def via_httpx_sync(url, method, headers, timeout):
    import httpx

    with httpx.Client(**timeout) as client:
        r = client.request(method, url, headers=headers)
        return _result(r.status_code, r.content, r.headers)


def via_requests(url, method, headers, timeout):
    import requests

    r = requests.request(method, url, headers=headers, **timeout)
    return _result(r.status_code, r.content, r.headers)


def via_urllib3(url, method, headers, timeout):
    import urllib3

    r = urllib3.PoolManager(retries=False).request(method, url, headers=headers, **timeout)
    return _result(r.status, r.data, r.headers)


def via_urllib(url, method, headers, timeout):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, **timeout) as r:
            return _result(r.status, r.read(), r.headers)
    except urllib.error.HTTPError as exc:  # 4xx/5xx: still an answer
        return _result(exc.code, exc.read(), exc.headers)


async def via_aiohttp(url, method, headers, timeout):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers) as r:
            return _result(r.status, await r.read(), r.headers)


async def via_mesh_transport(url, method, headers, timeout):
    import httpx

    import watt.mesh

    async with httpx.AsyncClient(transport=watt.mesh.transport(), **timeout) as client:
        r = await client.request(method, url, headers=headers)
        return _result(r.status_code, r.content, r.headers)


async def via_fetch(url, method, headers, timeout):
    import watt.mesh

    r = await watt.mesh.fetch(url, method=method, headers=headers, **timeout)
    return _result(r.status, r.body, {"x-from": r.header("x-from")})


CLIENTS = {"httpx": via_httpx, "httpx-sync": via_httpx_sync, "requests": via_requests,
           "urllib3": via_urllib3, "urllib": via_urllib, "aiohttp": via_aiohttp,
           "fetch": via_fetch, "mesh-transport": via_mesh_transport}


async def call(q: dict) -> dict:
    client = CLIENTS[q["client"][0]]
    headers = dict(h.split(":", 1) for h in q.get("h", ()))
    timeout = {"timeout": float(q["timeout"][0])} if "timeout" in q else {}
    args = (q["url"][0], q.get("method", ["GET"])[0], headers, timeout)
    try:
        if asyncio.iscoroutinefunction(client):
            return await client(*args)
        return await asyncio.to_thread(client, *args)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return {"error": f"{type(exc).__name__}: {exc}", "code": getattr(exc, "code", None),
                "error_types": [f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__]}


async def _json(send, payload) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    q = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/call":
        return await _json(send, await call(q))
    if scope["path"] == "/invalidate":
        import watt.cache

        watt.cache.invalidate(keys=q["url"])
        return await _json(send, {"invalidated": q["url"]})
    if scope["path"] == "/seen":
        seen = list(hooks.SEEN)
        hooks.SEEN.clear()
        return await _json(send, seen)
    # /echo and anything else: what arrived
    return await _json(send, {"app": NAME, "method": scope["method"], "path": scope["path"],
                              "headers": {k.decode(): v.decode() for k, v in scope["headers"]}})
