"""Entrypoint of the three-application start-up scenario: answers only when all answer.

``GET /`` calls ``svc-b`` and ``svc-c`` through the mesh (``watt.mesh.fetch``) and
answers 200 only when both answered 200, so the first 200 through the entrypoint
means that all three applications are up and serving, not just the first.
"""

import asyncio

import watt.mesh


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    try:
        answers = await asyncio.gather(
            watt.mesh.fetch("http://svc-b.plt.local/"), watt.mesh.fetch("http://svc-c.plt.local/")
        )
        ok = all(a.status == 200 for a in answers)
        body = b"ok" if ok else b"a service answered " + b",".join(
            str(a.status).encode() for a in answers)
    except watt.mesh.MeshError as exc:
        ok, body = False, f"{exc.code}: {exc}".encode()
    await send({"type": "http.response.start", "status": 200 if ok else 502,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
