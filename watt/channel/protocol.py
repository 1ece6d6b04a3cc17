"""Sans-IO channel protocol: frame layout, scope encoding, stream ids, flow control.

A frame is a flat tuple whose first item is its kind and whose second is the
stream id (0 for control frames).  Items are only ``int``, ``str``,
``bytes``, ``None`` and tuples of those, so a frame crosses a subinterpreter
queue without pickling and a process pipe through :mod:`marshal`.

Like h11, this module does no I/O and imports no asyncio, sockets or
interpreters: the transports (``queues.py``, ``pipes.py``) and the stream
endpoint (``endpoint.py``) are built on it, and its tests pair plain objects.

Frame layouts (``sid`` = stream id)::

    (REQUEST, sid, target, scope, body, more)    target: mesh host or None
    (BODY, sid, chunk, more)                     request body, caller -> app
    (RESPONSE_START, sid, status, headers, body, more)
    (RESPONSE_BODY, sid, chunk, more)
    (CREDIT, sid, nbytes)                        flow control, either way
    (CANCEL, sid)                                caller went away
    (ERROR, sid, code, message)                  stream failed
    (WS_ACCEPT, sid, subprotocol, headers)
    (WS_MESSAGE, sid, text, data)                exactly one of text/data set
    (WS_CLOSE, sid, code, reason)
    (READY, 0, pid, interpreter_id)              worker -> main
    (STOP, 0, graceful_timeout_ms)               main -> worker
    (STOPPED, 0)                                 worker -> main
    (FATAL, 0, code, message, traceback, subinterpreter_unsupported)
    (LINK, 0, link_id, app_id, send_qid, recv_qid, wake_send_fd, wake_recv_fd)
                          main -> caller: a direct channel to one worker of app_id
    (LINK_SERVE, 0, link_id, send_qid, recv_qid, wake_send_fd, wake_recv_fd)
                          main -> target: serve requests arriving on that channel
    (UNLINK, 0, link_id, gone)  main -> worker: stop using the link; gone=1: close it
    (UNLINKED, 0, link_id)      worker -> main: closed, its fds may be freed
    (HEALTH, 0, elu_permille, memory_bytes, ready, live)  worker -> main, every health
                          interval; ready/live: 1, 0, or None (the app has no such check)
    (LOG, 0, levels, lines)     worker -> main: log lines (each a JSON object) and their levels
    (METRICS, 0, token, None)   main -> worker: send your metrics
    (METRICS, 0, token, json)   worker -> main: the answer, a JSON snapshot
    (SPANS, 0, service, app, spans)  worker -> main: spans finished since the last
                          SPANS, each a JSON object (text) in OTLP's JSON shape
    (CACHE, 0, "invalidate", keys, tags)  worker -> main: drop HTTP cache entries
                          (watt.cache.invalidate; keys, tags: tuples of str)
    (CACHE, 0, "get", token, method, url, headers)  worker -> main: watt.cache.lookup
    (CACHE, 0, "got", token, status, headers, body, age)  main -> worker: the answer
                          (status None: a miss)
    (CACHE, 0, "put", method, url, headers, status, response_headers, body)
                          worker -> main: watt.cache.store
    (LOG_LEVEL, 0, level)       main -> worker: write lines from this level on (a LEVELS name)
    (CONN, 0, fd, data)         main -> entry worker: serve this client connection, whose
                          first bytes (read by a worker that stopped) are ``data``
                          (watt/worker/direct.py; subinterpreters share the process's fds)
    (CONN_CLOSED, 0, count)     worker -> main: that many direct connections ended
    (HANDOFF, 0, fd, data, redispatch)  worker -> main: this connection, with ``data``
                          (bytes read, not answered): serve it in the main engine, or
                          (redispatch=1, the worker stops) give it to another worker
    (CONN_RETIRE, 0, mode)      main -> entry worker: 0 drain (connection: close from now
                          on), 1 stop (close idle connections too), 2 abort them all
"""

from __future__ import annotations

# -- frame kinds --------------------------------------------------------------
REQUEST = 1
BODY = 2
RESPONSE_START = 3
RESPONSE_BODY = 4
CREDIT = 5
CANCEL = 6
ERROR = 7
WS_ACCEPT = 8
WS_MESSAGE = 9
WS_CLOSE = 10
READY = 20
STOP = 21
STOPPED = 22
FATAL = 23
LINK = 24
LINK_SERVE = 25
UNLINK = 26
UNLINKED = 27
HEALTH = 28
LOG = 29
METRICS = 30
SPANS = 31
CACHE = 33
LOG_LEVEL = 32
CONN = 34
CONN_CLOSED = 35
HANDOFF = 36
CONN_RETIRE = 37

KIND_NAMES = {
    REQUEST: "REQUEST",
    BODY: "BODY",
    RESPONSE_START: "RESPONSE_START",
    RESPONSE_BODY: "RESPONSE_BODY",
    CREDIT: "CREDIT",
    CANCEL: "CANCEL",
    ERROR: "ERROR",
    WS_ACCEPT: "WS_ACCEPT",
    WS_MESSAGE: "WS_MESSAGE",
    WS_CLOSE: "WS_CLOSE",
    READY: "READY",
    STOP: "STOP",
    STOPPED: "STOPPED",
    FATAL: "FATAL",
    LINK: "LINK",
    LINK_SERVE: "LINK_SERVE",
    UNLINK: "UNLINK",
    UNLINKED: "UNLINKED",
    HEALTH: "HEALTH",
    LOG: "LOG",
    METRICS: "METRICS",
    SPANS: "SPANS",
    CACHE: "CACHE",
    LOG_LEVEL: "LOG_LEVEL",
    CONN: "CONN",
    CONN_CLOSED: "CONN_CLOSED",
    HANDOFF: "HANDOFF",
    CONN_RETIRE: "CONN_RETIRE",
}

# Frames that end a stream for the side receiving them.
TERMINAL = frozenset({CANCEL, ERROR, WS_CLOSE})

# -- flow control ---------------------------------------------------------------
#: Bytes a sender may have in flight per stream and direction before it
#: must wait for CREDIT.  Memory per stream is bounded by this window.
WINDOW = 256 * 1024
#: Largest body piece put in one frame; larger chunks are split.
CHUNK = 64 * 1024
#: The receiver returns credit once this many consumed bytes are pending,
#: so one CREDIT frame covers several chunks.
CREDIT_BATCH = WINDOW // 4

#: The side that opens a stream picks its id by parity, as HTTP/2 does, so
#: both ends of one channel can open streams without coordinating.
MAIN_SIDE = 0
WORKER_SIDE = 1

MESH_SUFFIX = ".plt.local"


class ProtocolError(Exception):
    """A frame that does not fit the protocol (a bug on one side, never user input)."""


class StreamIds:
    """Allocates stream ids: even on the main side, odd on the worker side."""

    __slots__ = ("_next",)

    def __init__(self, side: int) -> None:
        self._next = 2 if side == MAIN_SIDE else 1

    def next(self) -> int:
        sid = self._next
        self._next += 2
        return sid


def opened_by(sid: int) -> int:
    """Which side opened stream ``sid``."""
    return WORKER_SIDE if sid & 1 else MAIN_SIDE


class SendWindow:
    """Sender half of flow control for one stream direction.

    ``can_send`` says whether another chunk may go out; the window may go
    negative by at most one chunk, which keeps the rule simple and memory
    bounded by ``WINDOW + CHUNK``.
    """

    __slots__ = ("available",)

    def __init__(self, size: int = WINDOW) -> None:
        self.available = size

    def can_send(self) -> bool:
        return self.available > 0

    def consume(self, n: int) -> None:
        self.available -= n

    def grant(self, n: int) -> None:
        if n <= 0:
            raise ProtocolError(f"credit must be positive, got {n}")
        self.available += n


class RecvWindow:
    """Receiver half: counts consumed bytes and says when to send CREDIT."""

    __slots__ = ("batch", "pending")

    def __init__(self, batch: int = CREDIT_BATCH) -> None:
        self.pending = 0
        self.batch = batch

    def consumed(self, n: int) -> int:
        """Record ``n`` consumed bytes; return the credit to send now (0 = none yet)."""
        self.pending += n
        if self.pending >= self.batch:
            credit, self.pending = self.pending, 0
            return credit
        return 0

    def flush(self) -> int:
        """Return whatever credit is pending (used when the reader waits for more)."""
        credit, self.pending = self.pending, 0
        return credit


def split_chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    """Split a body chunk into frame-sized pieces (at least one, maybe empty)."""
    if len(data) <= size:
        return [data if type(data) is bytes else bytes(data)]
    view = memoryview(data)
    return [bytes(view[i : i + size]) for i in range(0, len(data), size)]


# -- ASGI scope <-> tuple ---------------------------------------------------------
# Order of the scope tuple; keep in sync with encode_scope/decode_scope.
_SCOPE_FIELDS = (
    "type",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "subprotocols",
)


def flatten_headers(headers) -> tuple[bytes, ...]:
    """ASGI ``[(name, value), ...]`` -> ``(name, value, name, value, ...)``."""
    flat: list[bytes] = []
    for name, value in headers:
        flat.append(bytes(name))
        flat.append(bytes(value))
    return tuple(flat)


def pair_headers(flat: tuple[bytes, ...]) -> list[tuple[bytes, bytes]]:
    """Inverse of :func:`flatten_headers`."""
    if len(flat) % 2:
        raise ProtocolError("header tuple has an odd number of items")
    it = iter(flat)
    return list(zip(it, it, strict=False))


def _addr(value) -> tuple | None:
    if value is None:
        return None
    host, port = value[0], value[1]
    return (None if host is None else str(host), None if port is None else int(port))


def encode_scope(scope: dict) -> tuple:
    """Encode the parts of an HTTP or WebSocket ASGI scope that cross a channel."""
    kind = scope["type"]
    if kind not in ("http", "websocket"):
        raise ProtocolError(f"cannot forward scope type {kind!r}")
    raw_path = scope.get("raw_path")
    return (
        kind,
        scope.get("http_version", "1.1"),
        scope.get("method", "GET") if kind == "http" else None,
        scope.get("scheme", "http" if kind == "http" else "ws"),
        scope["path"],
        None if raw_path is None else bytes(raw_path),
        bytes(scope.get("query_string", b"")),
        scope.get("root_path", ""),
        flatten_headers(scope.get("headers", ())),
        _addr(scope.get("client")),
        _addr(scope.get("server")),
        tuple(scope.get("subprotocols", ())) if kind == "websocket" else None,
    )


def decode_scope(encoded: tuple) -> dict:
    """Rebuild an ASGI 3 scope dict from :func:`encode_scope`'s tuple."""
    if len(encoded) != len(_SCOPE_FIELDS):
        raise ProtocolError(f"scope tuple has {len(encoded)} fields, want {len(_SCOPE_FIELDS)}")
    (kind, version, method, scheme, path, raw_path, query, root, headers, client, server,
     subprotocols) = encoded
    scope = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": version,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root,
        "headers": pair_headers(headers),
        "client": None if client is None else list(client),
        "server": None if server is None else list(server),
        "extensions": {},
    }
    if kind == "http":
        scope["method"] = method
    else:
        scope["subprotocols"] = list(subprotocols or ())
    return scope


# Stream errors that a gateway answers with an HTTP status (the request reached
# the target, or no worker could take it); the body names the code, never the
# exception text, which stays in the logs.
_ERROR_STATUS = {
    "WATT_APP_UNHANDLED_ERROR": (500, b"Internal Server Error"),
    "WATT_WORKER_DIED": (502, b"Bad Gateway"),
    "WATT_MESH_WORKER_DIED": (502, b"Bad Gateway"),
    "WATT_MESH_UNKNOWN_APP": (502, b"Bad Gateway"),
    "WATT_NO_WORKER": (503, b"Service Unavailable"),
    "WATT_MESH_TIMEOUT": (504, b"Gateway Timeout"),
    "WATT_REQUEST_TIMEOUT": (504, b"Gateway Timeout"),
    "WATT_BODY_TOO_LARGE": (413, b"Content Too Large"),
    "WATT_OVERLOADED": (503, b"Service Unavailable"),
}


def error_response(code: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """``(status, headers, body)`` of the HTTP answer to a failed stream."""
    status, reason = _ERROR_STATUS.get(code, (500, b"Internal Server Error"))
    body = b'{"error": "' + reason + b'", "code": "' + code.encode() + b'"}'
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if status == 503:  # overloaded or restarting: worth trying again shortly
        headers.append((b"retry-after", b"1"))
    return status, headers, body


def mesh_app_id(host: str | None) -> str | None:
    """``"b.plt.local"`` (any case, optional port) -> ``"b"``; other hosts -> None."""
    if not host:
        return None
    host = host.lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()
    host = host.rstrip(".")  # "b.plt.local." is the same name, fully qualified
    if host.endswith(MESH_SUFFIX):
        app_id = host[: -len(MESH_SUFFIX)]
        return app_id or None
    return None


def describe(frame: tuple) -> str:
    """Short human-readable form of a frame, for logs and test failures."""
    name = KIND_NAMES.get(frame[0], f"kind {frame[0]}")
    return f"{name}(sid={frame[1]})"
