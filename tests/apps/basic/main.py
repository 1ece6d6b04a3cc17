"""A plain ASGI app for the integration tests: one route per behaviour under test."""

import asyncio
import hashlib
import json
import os
import sys

NAME = os.environ.get("APP_NAME", "basic")
_disconnects: asyncio.Queue | None = None
_socket_events: list[str] = []
_counter = None  # /count's prometheus_client Counter, made on first use
_in_flight = 0
_leaked: list[bytes] = []


def _audit(event, args):
    if event in ("socket.connect", "socket.bind", "socket.__new__"):
        _socket_events.append(event)


sys.addaudithook(_audit)


async def _json(send, payload, status=200):
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive):
    total, digest = 0, hashlib.sha256()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, None
        chunk = message.get("body", b"")
        total += len(chunk)
        digest.update(chunk)
        if not message.get("more_body"):
            return total, digest.hexdigest()


def _query(scope):
    from urllib.parse import parse_qs

    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started_by"] = NAME
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            marker = os.environ.get("SHUTDOWN_FILE")
            if marker:
                with open(marker, "a") as fh:
                    fh.write(f"{NAME} shutdown\n")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[0]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked to"})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": f"{NAME}: {message['text']}"})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def app(scope, receive, send):
    global _disconnects
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    path = scope["path"]
    q = _query(scope)
    if path == "/whoami":
        import _interpreters

        return await _json(send, {
            "app": NAME, "pid": os.getpid(), "interpreter": _interpreters.get_current()[0],
            "foo": os.environ.get("FOO"), "sys_path0": sys.path[0],
            "state": scope.get("state", {}).get("started_by"),
            "http_version": scope["http_version"], "method": scope["method"],
            "query": scope["query_string"].decode(),
            "host": dict(scope["headers"]).get(b"host", b"").decode(),
        })
    if path == "/environ":  # what `watt env` must report
        return await _json(send, dict(os.environ))
    if path == "/upload":
        total, digest = await _read_body(receive)
        return await _json(send, {"bytes": total, "sha256": digest})
    if path == "/chunks":  # a streamed answer of unknown length (chunked on HTTP/1.1)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(q.get("n", "3"))):
            await send({"type": "http.response.body", "body": f"part{i};".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path == "/download":
        size = int(q.get("size", "0"))
        chunk = b"x" * 65536
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(size).encode())]})
        sent = 0
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": sent < size})
        return
    if path == "/wait-disconnect":
        if _disconnects is None:
            _disconnects = asyncio.Queue()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        await _disconnects.put("disconnect")
        return
    if path == "/disconnect-seen":
        if _disconnects is None:
            _disconnects = asyncio.Queue()
        try:
            seen = await asyncio.wait_for(_disconnects.get(), 20)
        except TimeoutError:
            seen = "timeout"
        return await _json(send, {"seen": seen})
    if path == "/boom":
        raise RuntimeError("boom: secret-token-123")
    if path == "/crash":
        os._exit(3)
    if path == "/block-then-exit":
        # A worker that hangs (its loop blocked) and then ends itself: what was
        # queued for it meanwhile must go to another worker.
        import _interpreters
        import time

        with open(q["flag"] + ".blocking", "w") as fh:
            fh.write(str(_interpreters.get_current()[0]))
        while not os.path.exists(q["flag"]):
            time.sleep(0.005)
        raise SystemExit(1)
    if path == "/say":
        import logging

        print(f"print from {NAME}")
        sys.stderr.write(f"stderr from {NAME}\n")
        logging.getLogger("basic").error("logging from %s", NAME)
        await asyncio.to_thread(print, f"thread print from {NAME}")
        return await _json(send, {"said": True})
    if path == "/log-headers":  # structured logging of the request's headers
        import logging

        from loguru import logger

        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        logging.getLogger("basic").warning("stdlib saw headers",
                                           extra={"req": {"headers": headers}})
        logger.bind(req={"headers": headers}, user="ada").warning("loguru saw headers")
        return await _json(send, {"logged": True})
    if path == "/levels":  # one line per level, through stdlib logging and loguru
        import logging

        from loguru import logger

        log = logging.getLogger("levels")
        log.setLevel(logging.DEBUG)
        for level in ("debug", "info", "warning", "error"):
            getattr(log, level)(f"stdlib {level}")
            getattr(logger, level)(f"loguru {level}")
        return await _json(send, {"logged": True})
    if path == "/count":  # the application's own prometheus_client metric
        import prometheus_client

        global _counter
        if _counter is None:
            _counter = prometheus_client.Counter("app_hits", "Hits counted by the app.",
                                                 ["route"])
        _counter.labels(route="/count").inc()
        return await _json(send, {"counted": True})
    if path == "/leak":
        _leaked.append(b"L" * (int(q["mb"]) * 1024 * 1024))  # resident, kept forever
        return await _json(send, {"leaked_mb": sum(len(b) for b in _leaked) >> 20})
    if path == "/block-forever":
        import time

        while True:  # a worker whose event loop never comes back
            time.sleep(1)
    if path == "/die":
        # Ends this worker's event loop (and so the worker) without killing the process.
        asyncio.get_running_loop().stop()
        await asyncio.Event().wait()
    if path == "/mesh":
        import httpx

        before = len(_socket_events)
        target = q["target"]
        async with httpx.AsyncClient() as client:
            try:
                reply = await client.request(q.get("method", "GET"),
                                             f"http://{target}{q.get('path', '/whoami')}",
                                             content=q.get("body", "").encode() or None)
            except httpx.HTTPError as exc:
                return await _json(send, {"error": str(exc)}, status=502)
        return await _json(send, {"status": reply.status_code, "body": reply.text,
                                  "sockets": len(_socket_events) - before})
    if path == "/mesh-sync":
        import httpx

        def call():
            with httpx.Client() as client:
                return client.get(f"http://{q['target']}/whoami")

        reply = await asyncio.to_thread(call)
        return await _json(send, {"status": reply.status_code, "body": reply.json()})
    if path == "/headers":
        return await _json(send, {k.decode(): v.decode() for k, v in scope["headers"]})
    if path == "/mesh-headers":
        import httpx

        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://{q['target']}/headers")
        mine = {k.decode(): v.decode() for k, v in scope["headers"]}
        return await _json(send, {"mine": mine, "theirs": reply.json()})
    if path == "/chain":
        import watt.mesh

        hops = [h for h in q.get("path", "").split(",") if h]
        if not hops:
            return await _json(send, [NAME])
        reply = await watt.mesh.fetch(
            f"http://{hops[0]}.plt.local/chain?path={','.join(hops[1:])}")
        return await _json(send, [NAME, *reply.json()])
    if path == "/fanout":
        import watt.mesh

        n = int(q.get("n", "100"))
        replies = await asyncio.gather(*(
            watt.mesh.fetch(f"http://{q['target']}/whoami") for _ in range(n)))
        return await _json(send, {"ok": sum(r.status == 200 for r in replies),
                                  "workers": sorted({r.json()["interpreter"] for r in replies})})
    if path == "/slow":
        global _in_flight
        _in_flight += 1
        try:
            await asyncio.sleep(float(q.get("delay", "1")))
        finally:
            _in_flight -= 1
        return await _json(send, {"slow": True})
    if path == "/in-flight":
        return await _json(send, {"in_flight": _in_flight})
    if path == "/hold":
        # Held until ``<dir>/release`` exists; meanwhile ``<dir>/<pid>-<id>.held`` says
        # which worker holds it (the fault-injection tests kill that one).
        with open(os.path.join(q["dir"], f"{os.getpid()}-{q['id']}.held"), "w"):
            pass
        while not os.path.exists(os.path.join(q["dir"], "release")):  # noqa: ASYNC110 - a file set by the test process
            await asyncio.sleep(0.005)
        return await _json(send, {"pid": os.getpid(), "id": q["id"]})
    if path == "/fetch":
        import watt.mesh

        timeout = float(q["timeout"]) if "timeout" in q else None
        try:
            reply = await watt.mesh.fetch(f"http://{q['target']}{q.get('path', '/whoami')}",
                                          timeout=timeout)
        except watt.mesh.MeshError as exc:
            return await _json(send, {"code": exc.code, "message": exc.message})
        return await _json(send, {"status": reply.status, "body": reply.text})
    if path == "/fetch-sync":
        import watt.mesh

        reply = await asyncio.to_thread(watt.mesh.fetch_sync, f"http://{q['target']}/whoami")
        return await _json(send, {"status": reply.status, "body": reply.json()})
    if path == "/transport":
        import httpx

        import watt.mesh

        async with httpx.AsyncClient(transport=watt.mesh.transport()) as client:
            reply = await client.get(f"http://{q['target']}/whoami")
        return await _json(send, reply.json())
    if path == "/ws-mesh":
        import watt.mesh

        async with watt.mesh.websocket(f"ws://{q['target']}/ws", ["chat"]) as ws:
            await ws.send("hello")
            text = await ws.receive()
            await ws.send(b"xyz")
            data = await ws.receive()
            await ws.send("close")
            try:
                await ws.receive()
            except watt.mesh.MeshError as exc:
                closed = exc.code
        return await _json(send, {"text": text, "bytes": data.decode(), "closed": closed,
                                  "code": ws.close_code, "subprotocol": ws.subprotocol})
    if path == "/relay":
        import httpx

        hops = [h for h in q.get("via", "").split(",") if h]
        size = int(q["size"])
        if not hops:
            scope["path"] = "/download"
            return await app(scope, receive, send)
        url = f"http://{hops[0]}.plt.local/relay?via={','.join(hops[1:])}&size={size}"
        async with httpx.AsyncClient(timeout=60) as client:
            async with client.stream("GET", url) as reply:
                await send({"type": "http.response.start", "status": reply.status_code,
                            "headers": [(b"content-length", str(size).encode())]})
                async for chunk in reply.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/reject-upload":
        # Answers before reading the body, as an auth check or size limit would.
        return await _json(send, {"error": "too large"}, status=413)
    if path == "/mesh-upload-rejected":
        import httpx

        async def body():
            for _ in range(32):
                yield b"u" * 65536

        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(f"http://{q['target']}/reject-upload", content=body())
        return await _json(send, {"status": reply.status_code})
    if path == "/mesh-sync-in-loop":
        import httpx

        try:
            httpx.get("http://a.plt.local/whoami")  # noqa: ASYNC210 - the point of the test
        except httpx.HTTPError as exc:
            return await _json(send, {"error": str(exc)})
        return await _json(send, {"error": None})
    if path == "/mesh-big":
        import httpx

        size = int(q["size"])
        async with httpx.AsyncClient() as client:
            down = 0
            async with client.stream("GET", f"http://{q['target']}/download?size={size}") as r:
                async for chunk in r.aiter_bytes():
                    down += len(chunk)

            async def gen():
                for _ in range(size // 65536):
                    yield b"y" * 65536

            up = (await client.post(f"http://{q['target']}/upload", content=gen())).json()
        return await _json(send, {"down": down, "up": up["bytes"]})
    await _json(send, {"error": "not found", "path": path}, status=404)
