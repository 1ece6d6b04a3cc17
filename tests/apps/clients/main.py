"""Caller app for tests/test_mesh_clients.py: ``/call`` makes one request with one client.

``/call?client=C&url=U[&method=POST&up=KIND&size=N&stream=1&timeout=S&thread=loop]``
runs client ``C`` (urllib3, requests, urllib, aiohttp) — sync clients on a
thread, as an application would — and answers what came back: status, size
and sha256 of the body, the parsed JSON, the error (type names and message),
and how many socket events this interpreter saw during the call.  It also
serves ``/hang`` (answers only when the caller goes away) and ``/gzip``.
"""

import asyncio
import gzip
import hashlib
import io
import json
import os
import sys
from urllib.parse import parse_qs

NAME = os.environ.get("APP_NAME", "clients")
_SOCKET_EVENTS = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo"}
_events: list[str] = []
_hang_ends: asyncio.Queue | None = None


def _audit(event, args):
    if event in _SOCKET_EVENTS:
        _events.append(event)


sys.addaudithook(_audit)


def payload(size: int) -> bytes:
    return (b"watt mesh 0123456789 abcdefghij\n" * (size // 32 + 1))[:size]


def make_body(kind: str, size: int):
    data = json.dumps({"hello": "mesh"}).encode() if kind == "json" else payload(size)
    body = {"none": None, "bytes": data, "str": data.decode("ascii"), "file": io.BytesIO(data),
            "iter": (data[i:i + 50_000] for i in range(0, len(data), 50_000))}.get(kind)
    return (b"" if kind == "none" else data), body


class Digest:
    """Reads a response body chunk by chunk, as a streaming consumer would."""

    def __init__(self, status: int, content_type: str | None) -> None:
        self.status, self.content_type = status, content_type or ""
        self.size, self.sha, self.head = 0, hashlib.sha256(), b""

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.sha.update(chunk)
        if len(self.head) < 4096:
            self.head += chunk[: 4096 - len(self.head)]

    def result(self, parsed=None) -> dict:
        if parsed is None and "json" in self.content_type and self.size <= 4096:
            parsed = json.loads(self.head)
        return {"status": self.status, "bytes": self.size, "sha256": self.sha.hexdigest(),
                "json": parsed}


def _timeout(q) -> dict:
    """Each client's own default unless the test asks for a timeout."""
    return {"timeout": float(q["timeout"])} if "timeout" in q else {}


def via_urllib3(q, body):
    import urllib3

    http = urllib3.PoolManager(retries=False)
    stream = q.get("stream") == "1"
    r = http.request(q["method"], q["url"], body=body, preload_content=not stream,
                     **_timeout(q))
    digest = Digest(r.status, r.headers.get("content-type"))
    for chunk in r.stream(65536) if stream else [r.data]:
        digest.add(chunk)
    r.release_conn()
    return digest.result(r.json() if not stream and "json" in digest.content_type else None)


def via_requests(q, body):
    import requests

    if q.get("stream") == "1":
        with requests.Session() as session:
            with session.request(q["method"], q["url"], data=body, stream=True,
                                 **_timeout(q)) as r:
                digest = Digest(r.status_code, r.headers.get("content-type"))
                for chunk in r.iter_content(65536):
                    digest.add(chunk)
                return digest.result()
    r = requests.request(q["method"], q["url"], data=body, **_timeout(q))
    digest = Digest(r.status_code, r.headers.get("content-type"))
    digest.add(r.content)
    return digest.result(r.json() if "json" in digest.content_type else None)


def via_urllib(q, body):
    import urllib.request

    request = urllib.request.Request(q["url"], data=body, method=q["method"])
    stream = q.get("stream") == "1"
    opener = urllib.request.build_opener() if stream else None
    with (opener.open if stream else urllib.request.urlopen)(request, **_timeout(q)) as r:
        digest = Digest(r.status, r.getheader("content-type"))
        assert r.headers.get("content-type") == r.getheader("content-type")
        for chunk in iter(lambda: r.read(65536), b"") if stream else [r.read()]:
            digest.add(chunk)
        return digest.result()


async def via_aiohttp(q, body):
    import aiohttp

    if q.get("up") == "iter":
        chunks = body

        async def agen():
            for chunk in chunks:
                yield chunk

        body = agen()
    kwargs = {"json": {"hello": "mesh"}} if q.get("up") == "json" else {"data": body}
    timeout = {"timeout": aiohttp.ClientTimeout(sock_read=float(q["timeout"]))
               } if "timeout" in q else {}  # else the default: total=300, sock_read=None
    async with aiohttp.ClientSession(**timeout) as session:
        async with session.request(q["method"], q["url"], **kwargs) as r:
            digest = Digest(r.status, r.headers.get("content-type"))
            if q.get("stream") == "1":
                async for chunk in r.content.iter_chunked(65536):
                    digest.add(chunk)
                return digest.result()
            digest.add(await r.read())
            parsed = await r.json() if "json" in digest.content_type else None
            return digest.result(parsed)


CLIENTS = {"urllib3": via_urllib3, "requests": via_requests, "urllib": via_urllib,
           "aiohttp": via_aiohttp}


async def call(q: dict) -> dict:
    client = CLIENTS[q["client"]]
    q.setdefault("method", "GET")
    sent, body = make_body(q.get("up", "none"), int(q.get("size", 0)))
    before = len(_events)
    try:
        if asyncio.iscoroutinefunction(client):
            result = await client(q, body)
        elif q.get("thread") == "loop":
            result = client(q, body)
        else:
            result = await asyncio.to_thread(client, q, body)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        reason = getattr(exc, "reason", None)  # urllib's URLError wraps the cause
        result = {"error": f"{type(exc).__name__}: {exc}",
                  "error_types": [f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__],
                  "reason": type(reason).__name__ if isinstance(reason, Exception) else None}
    result["sockets"] = len(_events) - before
    result["sent_sha256"] = hashlib.sha256(sent).hexdigest()
    return result


async def _json(send, payload_, status=200, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": payload_})


async def app(scope, receive, send):
    global _hang_ends
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    if _hang_ends is None:
        _hang_ends = asyncio.Queue()
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/call":
        return await _json(send, json.dumps(await call(q)).encode())
    if scope["path"] == "/hang":  # never answers: ends when the caller goes away
        while (await receive())["type"] != "http.disconnect":
            pass
        return await _hang_ends.put("disconnect")
    if scope["path"] == "/hang-ended":
        try:
            seen = await asyncio.wait_for(_hang_ends.get(), 20)
        except TimeoutError:
            seen = "no disconnect within 20 s"
        return await _json(send, json.dumps({"seen": seen}).encode())
    if scope["path"] == "/gzip":
        body = gzip.compress(json.dumps({"gzip": NAME}).encode())
        return await _json(send, body, headers=[(b"content-encoding", b"gzip")])
    if scope["path"] == "/patched":
        import urllib.request

        import aiohttp
        import requests  # noqa: F401 - imports urllib3 through the hook
        import urllib3

        from watt.worker import mesh_aiohttp, mesh_urllib, mesh_urllib3

        flags = {}
        for module, adapter, cls, attr in (
                (urllib3, mesh_urllib3, urllib3.HTTPConnectionPool, "_make_request"),
                (urllib.request, mesh_urllib, urllib.request.HTTPHandler, "http_open"),
                (aiohttp, mesh_aiohttp, aiohttp.ClientRequest, "send")):
            before = getattr(cls, attr)
            adapter.patch(module)
            flags[module.__name__] = module._watt_mesh and getattr(cls, attr) is before
        return await _json(send, json.dumps(flags).encode())
    await _json(send, json.dumps({"error": "not found"}).encode(), status=404)
