"""Spans recorded inside a worker, and trace context in and out of HTTP headers.

Standard library only (it runs in subinterpreters).  A worker records a
SERVER span for each request it serves and a CLIENT span for each mesh call
it makes; finished spans are batched into one SPANS frame per loop
iteration, and the main side exports them (``watt/observability/tracing.py``).
The trace context is read from and written to headers in the formats the
config lists: W3C ``traceparent``/``tracestate``, B3 single header, B3 multi.
"""

from __future__ import annotations

import json
import random
import time

from watt.channel import protocol as p

_HEX = frozenset("0123456789abcdef")
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_encode_str = json.encoder.encode_basestring
_UNSET = '{"code":"UNSET"}'


def _attributes(attributes: dict) -> str:
    """Attribute keys are our own ASCII names; values are str, int or bool."""
    parts = []
    for key, value in attributes.items():
        if value is True or value is False:
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = _encode_str(str(value))
        parts.append(f'"{key}":{text}')
    return "{" + ",".join(parts) + "}"
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def _is_hex(text: str, size: int) -> bool:
    return len(text) == size and _HEX.issuperset(text)


# -- reading ------------------------------------------------------------------------
def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """``(trace_id, parent_span_id, sampled)`` of a W3C traceparent, or None if invalid."""
    parts = value.strip().lower().split("-")
    if len(parts) < 4 or not _is_hex(parts[0], 2) or parts[0] == "ff":
        return None
    if parts[0] == "00" and len(parts) != 4:
        return None
    trace_id, span_id, flags = parts[1], parts[2], parts[3]
    if not (_is_hex(trace_id, 32) and _is_hex(span_id, 16) and _is_hex(flags, 2)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def _b3_trace_id(text: str) -> str | None:
    text = text.lower()
    if _is_hex(text, 16):
        text = "0" * 16 + text  # 64-bit B3 ids are the low half of a 128-bit id
    return text if _is_hex(text, 32) and text != _ZERO_TRACE else None


def _b3_sampled(flag: str | None) -> bool:
    return flag is None or flag.lower() in ("1", "d", "true")


def parse_b3(value: str) -> tuple[str, str, bool] | None:
    """The B3 single header: ``{trace}-{span}[-{sampled}[-{parent}]]``."""
    parts = value.strip().split("-")
    if len(parts) < 2:
        return None  # sampling state alone: nothing to continue
    trace_id, span_id = _b3_trace_id(parts[0]), parts[1].lower()
    if trace_id is None or not _is_hex(span_id, 16) or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, _b3_sampled(parts[2] if len(parts) > 2 else None)


def parse_b3multi(headers: dict[bytes, bytes]) -> tuple[str, str, bool] | None:
    raw_trace, raw_span = headers.get(b"x-b3-traceid"), headers.get(b"x-b3-spanid")
    if raw_trace is None or raw_span is None:
        return None
    trace_id = _b3_trace_id(raw_trace.decode("latin-1").strip())
    span_id = raw_span.decode("latin-1").strip().lower()
    if trace_id is None or not _is_hex(span_id, 16) or span_id == _ZERO_SPAN:
        return None
    if headers.get(b"x-b3-flags", b"") == b"1":
        return trace_id, span_id, True
    sampled = headers.get(b"x-b3-sampled")
    return trace_id, span_id, _b3_sampled(sampled.decode("latin-1") if sampled else None)


def extract(headers: dict[bytes, bytes], propagators) -> tuple[str, str, bool] | None:
    """The first valid incoming context among ``propagators``, in their order."""
    for name in propagators:
        if name == "tracecontext":
            value = headers.get(b"traceparent")
            found = parse_traceparent(value.decode("latin-1")) if value else None
        elif name == "b3":
            value = headers.get(b"b3")
            found = parse_b3(value.decode("latin-1")) if value else None
        else:
            found = parse_b3multi(headers)
        if found is not None:
            return found
    return None


# -- writing ------------------------------------------------------------------------
TRACE_HEADERS = (b"traceparent", b"tracestate", b"b3", b"x-b3-traceid", b"x-b3-spanid",
                 b"x-b3-sampled", b"x-b3-flags", b"x-b3-parentspanid")


def inject(trace_id: str, span_id: str, sampled: bool, trace_state: bytes | None,
           propagators) -> list[tuple[bytes, bytes]]:
    """Headers that carry ``span_id`` as the parent of the next hop."""
    out: list[tuple[bytes, bytes]] = []
    for name in propagators:
        if name == "tracecontext":
            out.append((b"traceparent",
                        f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}".encode()))
            if trace_state:
                out.append((b"tracestate", trace_state))
        elif name == "b3":
            out.append((b"b3", f"{trace_id}-{span_id}-{'1' if sampled else '0'}".encode()))
        else:
            out += [(b"x-b3-traceid", trace_id.encode()), (b"x-b3-spanid", span_id.encode()),
                    (b"x-b3-sampled", b"1" if sampled else b"0")]
    return out


# -- recording ----------------------------------------------------------------------
class Span:
    """One span being recorded; :meth:`Tracer.finish` sends it to the main side."""

    __slots__ = ("attributes", "events", "kind", "name", "parent_id", "span_id", "start_ns",
                 "trace_id")

    def __init__(self, name: str, kind: str, trace_id: str, span_id: str,
                 parent_id: str | None, attributes: dict | str) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.attributes = attributes
        self.events: list[dict] = []
        self.start_ns = time.time_ns()

    def record_exception(self, exc: BaseException) -> None:
        import traceback

        self.events.append({"name": "exception", "timeUnixNano": time.time_ns(), "attributes": {
            "exception.type": type(exc).__qualname__, "exception.message": str(exc),
            "exception.stacktrace": "".join(traceback.format_exception(exc))}})


class Tracer:
    """Spans of one worker, batched to the main side in SPANS frames."""

    def __init__(self, channel, loop, service: str, app_id: str, ratio: float,
                 propagators) -> None:
        self._channel = channel
        self._loop = loop
        self.service = service
        self.app_id = app_id
        self.ratio = ratio
        self.propagators = tuple(propagators)
        self._pending: list[dict] = []
        self._scheduled = False

    def sample_new(self) -> bool:
        return self.ratio >= 1.0 or random.random() < self.ratio

    def start(self, name: str, kind: str, trace_id: str, parent_id: str | None,
              attributes: dict | str) -> Span:
        return Span(name, kind, trace_id, new_span_id(), parent_id, attributes)

    def finish(self, span: Span, status_code: int | None, error: str | None = None) -> None:
        """End ``span`` with the HTTP status it ended with (or an error message)."""
        attributes = span.attributes  # a dict, or JSON members already written
        members = attributes if isinstance(attributes, str) else _attributes(attributes)[1:-1]
        if status_code is not None:
            members += f'{"," if members else ""}"http.response.status_code":{int(status_code)}'
        failed = error is not None or (status_code is not None and (
            status_code >= 500 or (span.kind == "CLIENT" and status_code >= 400)))
        status = {"code": "ERROR", "message": error or ""} if failed else None
        # Encoded here, in the worker, by hand (ids and kind are plain ASCII): the main
        # side stores or writes the text as it is.
        parent = f'"{span.parent_id}"' if span.parent_id else "null"
        self._pending.append(
            f'{{"traceId":"{span.trace_id}","spanId":"{span.span_id}",'
            f'"parentSpanId":{parent},"name":{_encode_str(span.name)},"kind":"{span.kind}",'
            f'"startTimeUnixNano":{span.start_ns},"endTimeUnixNano":{time.time_ns()},'
            f'"attributes":{{{members}}},'
            f'"status":{_UNSET if status is None else _encode(status)},'
            f'"events":{_encode(span.events) if span.events else "[]"}}}')
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """One SPANS frame for every span finished since the last one."""
        self._scheduled = False
        if not self._pending or self._channel.lost:
            self._pending.clear()
            return
        batch, self._pending = tuple(self._pending), []
        self._channel.send((p.SPANS, 0, self.service, self.app_id, batch))
