"""An ASGI app for the scaling and readiness/liveness tests.

``/spin?ms=N`` keeps the event loop busy for N ms (CPU); ``/idle?ms=N`` waits
N ms without using it; ``/whoami`` names the worker; ``/set?ready=0&live=0``
changes what this worker's checks answer (``ready`` is sync, ``live`` async).
"""

import asyncio
import json
import os
import time
from urllib.parse import parse_qs

STATE = {"ready": True, "live": True}


def ready():
    return STATE["ready"]


async def live():
    await asyncio.sleep(0)
    return STATE["live"]


def broken():
    raise RuntimeError("the database is gone")


def _interpreter() -> int:
    try:
        import _interpreters

        return int(_interpreters.get_current()[0])
    except Exception:
        return 0


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if path == "/spin":
        end = time.perf_counter() + int(query.get("ms", "20")) / 1000
        while time.perf_counter() < end:
            pass
    elif path == "/idle":
        await asyncio.sleep(int(query.get("ms", "50")) / 1000)
    elif path == "/set":
        for key in ("ready", "live"):
            if key in query:
                STATE[key] = query[key] == "1"
    body = json.dumps({"pid": os.getpid(), "interpreter": _interpreter(), **STATE}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
