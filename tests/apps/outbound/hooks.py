"""Interceptors of tests/test_outbound.py (loaded by each worker of the app)."""

from watt.interceptors import Response

SEEN: list[dict] = []  # every request the `record` hook saw, for /seen


async def record(request, call_next):
    """Tags each request and remembers it; passes everything else through."""
    request.headers.set("x-intercepted", request.app or "?")
    response = await call_next(request)
    SEEN.append({"method": request.method, "url": request.url, "mesh": request.mesh,
                 "attempts": request.attempt, "status": response.status,
                 "async": request.is_async})
    return response


async def short_circuit(request, call_next):
    """``x-short: 1`` is answered here, never sent; ``x-break: 1`` makes this hook fail."""
    if request.headers.get("x-break"):
        raise RuntimeError("broken on purpose")
    if request.headers.get("x-short"):
        return Response(299, [("content-type", "text/plain"), ("x-from", "hook")], b"short")
    return await call_next(request)


def not_async(request, call_next):  # a config error: hooks are async
    return call_next(request)


async def timeout_from_header(request, call_next):
    """``x-timeout: S`` sets the request's timeout, as DefaultTimeout does."""
    if request.headers.get("x-timeout"):
        request.timeout = float(request.headers.get("x-timeout"))
    return await call_next(request)
