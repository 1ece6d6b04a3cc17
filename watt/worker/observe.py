"""Per request and per mesh call: what the logs, the metrics and the traces of
a worker each need, in one place, so ``serve.py`` and ``mesh_client.py`` make
one call at the start and one at the end.

The three never call each other: they meet in the request context
(``context.py``) that this module sets when a request starts.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

from watt.channel import protocol as p

from .context import RequestContext, current
from .metrics import WorkerMetrics
from .telemetry import LogEmitter
from .tracing import Span, Tracer, extract, inject, new_span_id, new_trace_id


class _Request:
    __slots__ = ("ctx", "method", "path", "span", "start_ns")

    def __init__(self, method: str, path: str, ctx: RequestContext, span: Span | None) -> None:
        self.start_ns = time.perf_counter_ns()
        self.method = method
        self.path = path
        self.ctx = ctx
        self.span = span


class _MeshCall:
    """One outgoing call being observed: a mesh call (``target`` is the application)
    or an external one (``target`` None, ``host`` the server)."""

    __slots__ = ("host", "method", "span", "start_ns", "target", "url")

    def __init__(self, target: str | None, method: str, span: Span | None, host: str,
                 url: str) -> None:
        self.start_ns = time.perf_counter_ns()
        self.target = target
        self.method = method
        self.span = span
        self.host = host
        self.url = url


class Observer:
    """Logs, metrics and spans of one worker.

    ``spec["observe"]``: ``level``, ``access_log``, ``redact``, ``censor`` and
    ``tracing`` (None, or ``service``, ``ratio``, ``propagators``).
    """

    def __init__(self, spec: dict, channel, loop, selector=None, own_process: bool = False,
                 fallback=None) -> None:
        conf = spec.get("observe") or {}
        self.app_id = spec["app_id"]
        self.log = LogEmitter(channel, loop, self.app_id, spec.get("worker", 0),
                              conf.get("level", "info"), conf.get("redact", ()),
                              conf.get("censor", "[Redacted]"), fallback)
        self.access_log = conf.get("access_log", True)
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the worker's loop thread
        self.metrics = WorkerMetrics(selector, own_process)
        tracing = conf.get("tracing")
        self.tracer = (Tracer(channel, loop, tracing["service"], self.app_id, tracing["ratio"],
                              tracing["propagators"]) if tracing else None)
        # Without tracing, incoming W3C context is still read (for log lines) and
        # passed on unchanged on mesh calls.
        self.propagators = tuple(tracing["propagators"]) if tracing else ("tracecontext",)

    # -- a request this worker serves ---------------------------------------------------
    def begin(self, scope: dict) -> _Request:
        """Called in the request's own task, before the application runs."""
        wanted: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _READ:
                wanted[name] = value
        raw_id = wanted.get(b"x-request-id")
        req_id = raw_id.decode("latin-1") if raw_id is not None else None
        found = extract(wanted, self.propagators) if len(wanted) > (raw_id is not None) else None
        tracer, span = self.tracer, None
        method = scope.get("method") or "GET"
        path = scope["path"]
        if tracer is not None:
            trace_id, parent_id, sampled = found if found else (new_trace_id(), None,
                                                                tracer.sample_new())
            if sampled:
                span = tracer.start(f"{method} {path}", "SERVER", trace_id, parent_id,
                                    _server_attributes(scope, method, path))
                span_id = span.span_id
            else:
                span_id = new_span_id()
        elif found is not None:
            trace_id, span_id, sampled = found
        else:
            trace_id = span_id = None
            sampled = False
        ctx = RequestContext(req_id, trace_id, span_id, sampled, wanted.get(b"tracestate"))
        current.set(ctx)
        self.metrics.in_flight += 1
        return _Request(method, path, ctx, span)

    def end(self, request: _Request, status: int, error: BaseException | None = None) -> None:
        """The response ended (or failed: ``status`` 500 and the exception)."""
        metrics = self.metrics
        metrics.in_flight -= 1
        elapsed = time.perf_counter_ns() - request.start_ns
        metrics.request_done(request.method, status, elapsed / 1e9)
        if self.access_log:
            self.log.access(request.method, request.path, status, elapsed / 1e6, request.ctx)
        if request.span is not None:
            if error is not None:
                request.span.record_exception(error)
            self.tracer.finish(request.span, status,
                               f"{type(error).__name__}: {error}" if error is not None else None)

    def metrics_reply(self, token: int) -> None:
        """Answer the main side's METRICS request with a snapshot."""
        if self.tracer is not None:
            self.tracer.flush()  # spans finished so far reach the main side first
        self.log.channel.send((p.METRICS, 0, token, json.dumps(
            self.metrics.snapshot(), separators=(",", ":"), default=str)))

    # -- a call this worker makes: mesh or external ----------------------------------------
    def mesh_begin(self, target: str, method: str, host: str,
                   raw_path: bytes) -> tuple[_MeshCall, list[tuple[bytes, bytes]]]:
        """The call's record and the headers it carries (request id, trace context)."""
        url = f"http://{host}{raw_path.decode('latin-1')}"
        return self._client_begin(target, method, host.split(":", 1)[0], url,
                                  f"{method} {target}", {"watt.mesh.target": target})

    def client_begin(self, host: str, method: str,
                     url: str) -> tuple[_MeshCall, list[tuple[bytes, bytes]]]:
        """An external call (``worker/outbound.py``): the same, with the host as target."""
        return self._client_begin(None, method, host, url, f"{method} {host}", None)

    def _client_begin(self, target, method, host, url, name, extra_attributes):
        ctx = current.get()
        headers: list[tuple[bytes, bytes]] = []
        span = None
        if ctx is not None and ctx.req_id is not None:
            headers.append((b"x-request-id", ctx.req_id.encode("latin-1")))
        tracer = self.tracer
        if ctx is not None and ctx.trace_id is not None:
            trace_id, parent_id, sampled = ctx.trace_id, ctx.span_id, ctx.sampled
        elif tracer is not None:  # outside a request (start-up, a background task)
            trace_id, parent_id, sampled = new_trace_id(), None, tracer.sample_new()
        else:
            return _MeshCall(target, method, None, host, url), headers
        if tracer is not None and sampled:
            attributes = {"http.request.method": method, "server.address": host,
                          "url.full": url}
            if extra_attributes:
                attributes.update(extra_attributes)
            span = tracer.start(name, "CLIENT", trace_id, parent_id, attributes)
            parent_id = span.span_id
        headers += inject(trace_id, parent_id, sampled,
                          ctx.trace_state if ctx is not None else None, self.propagators)
        return _MeshCall(target, method, span, host, url), headers

    def mesh_end(self, call: _MeshCall, status: int, error: str | None = None,
                 end_ns: int | None = None, exc: BaseException | None = None) -> None:
        """The response started (``status``), or the call failed (0, the error, and the
        exception when there is one: an ``exception`` event on the span, as a request
        that raised gets on its SERVER span)."""
        if end_ns is None:
            end_ns = time.perf_counter_ns()
        if threading.get_ident() != self._loop_thread:
            # A synchronous client's thread: metrics and spans are the loop's to touch.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to report
                self._loop.call_soon_threadsafe(self.mesh_end, call, status, error, end_ns,
                                                exc)
            return
        seconds = (end_ns - call.start_ns) / 1e9
        metrics = self.metrics
        if call.target is not None:
            metrics.mesh_done(call.target, call.method, status, seconds)
        metrics.client_done(call.host, call.method, status, seconds)
        if self.log.threshold <= 10:  # debug
            self.log.emit("debug", f"{call.method} {call.url} {status or error}", {
                "outbound": {"method": call.method, "url": call.url, "status": status,
                             "duration": round(seconds * 1000, 3), "error": error}})
        if call.span is not None:
            if exc is not None:
                call.span.record_exception(exc)
            self.tracer.finish(call.span, status or None, error)
            call.span = None

    client_end = mesh_end


_READ = frozenset({b"x-request-id", b"traceparent", b"tracestate", b"b3", b"x-b3-traceid",
                   b"x-b3-spanid", b"x-b3-sampled", b"x-b3-flags"})


def _server_attributes(scope: dict, method: str, path: str) -> str:
    """A SERVER span's attributes as JSON members, written once per request (no dict)."""
    text = (f'"http.request.method":{_enc(method)},"url.path":{_enc(path)},'
            f'"url.scheme":{_enc(scope.get("scheme", "http"))},'
            f'"network.protocol.version":{_enc(scope.get("http_version", "1.1"))}')
    query = scope.get("query_string")
    if query:
        text += f',"url.query":{_enc(query.decode("latin-1"))}'
    server = scope.get("server")
    if server:
        text += f',"server.address":{_enc(str(server[0]))}'
    client = scope.get("client")
    if client:
        text += f',"client.address":{_enc(str(client[0]))}'
    return text


_enc = json.encoder.encode_basestring
