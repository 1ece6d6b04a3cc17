"""Interceptors shipped with Watt, and the types to write your own.

An interceptor wraps every outgoing HTTP request of an application — to
another application over the mesh or to an external service — whatever the
client (httpx, requests, urllib3, aiohttp, urllib, ``watt.mesh.fetch``)::

    async def hook(request, call_next):
        response = await call_next(request)
        return response

Configure them with ``mesh.interceptors`` (every application) or
``applications[].interceptors``; a class is built once per worker with the
entry's ``options``::

    "interceptors": [
        {"use": "watt.interceptors:Retry", "options": {"attempts": 3}},
        {"use": "watt.interceptors:CircuitBreaker", "options": {"failures": 5}},
        {"use": "watt.interceptors:DefaultTimeout", "options": {"seconds": 10}},
        {"use": "watt.interceptors:SetHeaders",
         "options": {"env": {"x-api-key": "BILLING_KEY"}, "hosts": ["api.billing.example"]}}
    ]

Standard library only: this module loads in subinterpreters.  See
docs/outbound.md.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time

from watt.worker.outbound import Headers, InterceptorError, Request, Response, SendError

__all__ = ["CircuitBreaker", "DefaultTimeout", "Headers", "InterceptorError", "Request",
           "Response", "Retry", "SendError", "SetHeaders"]

IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")


def _matcher(hosts):
    """None (every host) or a predicate over host names (``*.example.com`` patterns)."""
    if hosts is None:
        return None
    patterns = tuple(h.lower() for h in ([hosts] if isinstance(hosts, str) else hosts))
    return lambda host: any(fnmatch.fnmatchcase(host, p) for p in patterns)


def _items(value, name: str) -> tuple:
    """A list option as a tuple: a lone string would be taken letter by letter."""
    if isinstance(value, str | bytes):
        raise ValueError(f"{name} must be a list, not the string {value!r}")
    return tuple(value)


def _not_negative(value, name: str) -> float:
    if float(value) < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return float(value)


def _retry_after(response: Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


class Retry:
    """Send an idempotent request again after a transport failure or a
    ``statuses`` answer, waiting ``backoff * 2**n`` seconds (at most
    ``max_backoff``; a ``Retry-After`` in seconds is honoured up to that bound).

    Only methods in ``methods`` are retried, and only requests whose body can be
    sent twice (not a streamed upload)."""

    def __init__(self, attempts: int = 3, backoff: float = 0.1, max_backoff: float = 5.0,
                 statuses=(502, 503, 504), methods=IDEMPOTENT, hosts=None) -> None:
        if int(attempts) < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = int(attempts)
        self.backoff = _not_negative(backoff, "backoff")
        self.max_backoff = _not_negative(max_backoff, "max_backoff")
        self.statuses = frozenset(int(s) for s in _items(statuses, "statuses"))
        self.methods = frozenset(m.upper() for m in _items(methods, "methods"))
        self.hosts = _matcher(hosts)

    async def __call__(self, request: Request, call_next) -> Response:
        if (request.method not in self.methods or not request.replayable
                or (self.hosts is not None and not self.hosts(request.host))):
            return await call_next(request)
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            try:
                response = await call_next(request)
            except SendError:
                if last:
                    raise
            else:
                if last or response.status not in self.statuses:
                    return response
                after = _retry_after(response)
                if after is not None:
                    delay = min(self.max_backoff, after)
                await response.discard()
            await request.sleep(delay)
        raise AssertionError("unreachable")  # the last attempt returned or raised


class _Circuit:
    __slots__ = ("failures", "opened_at", "probing")

    def __init__(self) -> None:
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False


class CircuitBreaker:
    """Per host: after ``failures`` failed calls in a row (a transport failure or
    a status >= ``status``), refuse calls to that host for ``reset`` seconds with
    ``WATT_CIRCUIT_OPEN``, then let one call through: its success closes the
    circuit, its failure opens it again.  State is per worker."""

    def __init__(self, failures: int = 5, reset: float = 30.0, status: int = 500,
                 hosts=None) -> None:
        if int(failures) < 1:
            raise ValueError("failures must be at least 1")
        self.failures = int(failures)
        self.reset = _not_negative(reset, "reset")
        self.status = int(status)
        self.hosts = _matcher(hosts)
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()  # synchronous clients call from many threads

    def _admit(self, host: str) -> _Circuit:
        with self._lock:
            circuit = self._circuits.get(host)
            if circuit is None:
                circuit = self._circuits[host] = _Circuit()
            if circuit.opened_at is not None:
                left = self.reset - (time.monotonic() - circuit.opened_at)
                if left > 0 or circuit.probing:
                    raise InterceptorError(
                        "WATT_CIRCUIT_OPEN", f"circuit open for {host}: {circuit.failures} "
                        f"failed calls in a row; next try in {max(left, 0):.1f} s")
                circuit.probing = True  # half-open: this call decides
            return circuit

    def _settle(self, circuit: _Circuit, ok: bool) -> None:
        with self._lock:
            circuit.probing = False
            if ok:
                circuit.failures, circuit.opened_at = 0, None
                return
            circuit.failures += 1
            if circuit.failures >= self.failures or circuit.opened_at is not None:
                circuit.opened_at = time.monotonic()

    def state(self, host: str) -> str:
        """``closed``, ``open`` or ``half-open`` (the reset time has passed)."""
        circuit = self._circuits.get(host)
        if circuit is None or circuit.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - circuit.opened_at < self.reset else "half-open"

    async def __call__(self, request: Request, call_next) -> Response:
        if self.hosts is not None and not self.hosts(request.host):
            return await call_next(request)
        circuit = self._admit(request.host)
        ok = False
        try:
            response = await call_next(request)
            ok = response.status < self.status
            return response
        finally:
            self._settle(circuit, ok)


class DefaultTimeout:
    """A read timeout of ``seconds`` for requests whose client sets none of its own
    (requests, urllib3 and urllib wait forever by default)."""

    def __init__(self, seconds: float = 30.0) -> None:
        if float(seconds) <= 0:
            raise ValueError("seconds must be positive")
        self.seconds = float(seconds)

    async def __call__(self, request: Request, call_next) -> Response:
        if request.timeout is None:
            request.timeout = self.seconds
        return await call_next(request)


class SetHeaders:
    """Add headers to requests for ``hosts`` (``*.example.com`` patterns; every
    host when absent): ``headers`` as given, ``env`` read from the named
    environment variables of the application (an API key) when the worker starts.
    A header the request already has is kept unless ``override``."""

    def __init__(self, headers: dict | None = None, env: dict | None = None, hosts=None,
                 override: bool = False) -> None:
        values = {str(k): str(v) for k, v in (headers or {}).items()}
        for name, variable in (env or {}).items():
            if variable not in os.environ:
                raise ValueError(f"environment variable {variable} (for header {name}) is "
                                 "not set in the application's environment")
            values[str(name)] = os.environ[variable]
        self.values = tuple(values.items())
        self.hosts = _matcher(hosts)
        self.override = bool(override)

    async def __call__(self, request: Request, call_next) -> Response:
        if self.hosts is None or self.hosts(request.host):
            for name, value in self.values:
                if self.override or name not in request.headers:
                    request.headers.set(name, value)
        return await call_next(request)
