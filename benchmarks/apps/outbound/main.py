"""App of benchmarks/outbound.py: times outgoing calls from inside its worker.

``/bench?client=fetch|httpx&url=U&n=N&mode=M`` makes N sequential calls and
answers the per-call times in microseconds.  ``mode`` sets this worker's
pipeline for the run: ``bypass`` (no interceptors, no observation: the
client's path as without the pipeline), ``empty`` (no interceptors: the
default), ``one`` (one pass-through interceptor), ``shipped`` (Retry,
CircuitBreaker, DefaultTimeout and SetHeaders, none of which acts here).
"""

import json
import time
from urllib.parse import parse_qs

import httpx

import watt.mesh
from watt.worker import outbound

_client: httpx.AsyncClient | None = None
_observer = None


async def passthrough(request, call_next):
    return await call_next(request)


SHIPPED = [("watt.interceptors:Retry", {}), ("watt.interceptors:CircuitBreaker", {}),
           ("watt.interceptors:DefaultTimeout", {}),
           ("watt.interceptors:SetHeaders", {"headers": {"x-bench": "1"}})]


def set_mode(mode: str) -> None:
    global _observer
    if _observer is None:
        _observer = outbound._observer
    outbound._observer = None if mode == "bypass" else _observer
    outbound._hooks = {"bypass": (), "empty": (),
                       "one": (("main:passthrough", passthrough),),
                       "shipped": tuple(outbound._load(u, o) for u, o in SHIPPED)}[mode]


async def one_call(client: str, url: str) -> None:
    if client == "fetch":
        response = await watt.mesh.fetch(url)
        assert response.status == 200, response.status
    else:
        response = await _client.get(url)
        assert response.status_code == 200, response.status_code


async def app(scope, receive, send):
    global _client
    if scope["type"] != "http":
        return
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/bench":
        if _client is None:
            _client = httpx.AsyncClient()
        set_mode(q["mode"])
        try:
            times = []
            for _ in range(int(q["n"])):
                start = time.perf_counter_ns()
                await one_call(q["client"], q["url"])
                times.append((time.perf_counter_ns() - start) / 1000)
        finally:
            set_mode("empty")
        body = json.dumps(times).encode()
    else:
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
