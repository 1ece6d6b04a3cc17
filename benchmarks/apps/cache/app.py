"""The cache benchmark's applications (one module, three ids, see ../../cache.py).

``front`` answers ``/hit``, ``/miss`` and ``/plain`` with one ``watt.mesh.fetch``
each; ``cached`` (in ``httpCache.applications``) and ``plain`` (not) work
``WORK_S`` of CPU per request (a stand-in for a query or a template), then answer
``/`` with "ok" fresh for an hour, and ``/no-store`` with "ok" never stored.
"""

import time

import watt.mesh

WORK_S = 0.001

BODY = b"ok"
FRESH = [(b"content-type", b"text/plain"), (b"content-length", b"2"),
         (b"cache-control", b"max-age=3600")]
NO_STORE = [(b"content-type", b"text/plain"), (b"content-length", b"2"),
            (b"cache-control", b"no-store")]
CALLS = {"/hit": "http://cached.plt.local/", "/miss": "http://cached.plt.local/no-store",
         "/plain": "http://plain.plt.local/"}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].replace("lifespan.", "")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    path = scope["path"]
    url = CALLS.get(path)
    if url is not None:  # front
        reply = await watt.mesh.fetch(url)
        status, body = reply.status, reply.body
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    else:  # cached, plain
        began = time.perf_counter()
        while time.perf_counter() - began < WORK_S:
            pass
        status, body = 200, BODY
        headers = NO_STORE if path == "/no-store" else FRESH
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
