"""The request a worker is serving right now: what its log lines, metrics and
spans all read (request id, trace id, span id), and nothing else.

Set by ``observe.py`` when a request starts, in that request's task; asyncio
tasks, ``asyncio.to_thread`` and the WSGI bridge copy it, so a line logged or
a mesh call made anywhere while serving the request carries the same ids.
"""

from __future__ import annotations

from contextvars import ContextVar


class RequestContext:
    __slots__ = ("req_id", "sampled", "span_id", "trace_id", "trace_state")

    def __init__(self, req_id: str | None, trace_id: str | None = None,
                 span_id: str | None = None, sampled: bool = False,
                 trace_state: bytes | None = None) -> None:
        self.req_id = req_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.trace_state = trace_state


current: ContextVar[RequestContext | None] = ContextVar("watt_request", default=None)
