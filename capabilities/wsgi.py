"""WSGI applications: any WSGI callable, served through Watt's WSGI-to-ASGI bridge.

Config keys: ``app`` (``"module:attr"`` or ``"module:factory()"``, detected
when absent), ``threads`` (threads that run the WSGI code in each worker,
default 10), ``workers``, ``isolation`` and ``env``.

Detection (reads files, never imports them): ``wsgi.py`` defining
``application`` (or ``app``), or a ``main.py`` / ``app.py`` with a
top-level ``def app(environ, start_response)`` (or ``application``).

The bridge is ours rather than a2wsgi's: a2wsgi (1.10) reads
``http.disconnect`` as the end of the body (a cut upload looks complete),
leaves the thread of a cancelled streaming response blocked for ever on its
full send queue (a subinterpreter with a blocked thread cannot be
destroyed), never shuts its pool down and writes ``wsgi.errors`` to stdout.
What this one does:

- the WSGI callable runs in a ``ThreadPoolExecutor(threads)``, so at most
  ``threads`` requests run the application's code at once; the others wait;
- ``wsgi.input`` pulls the request body from ASGI ``receive`` a chunk at a
  time, on demand, so an upload never sits whole in memory; a client that
  goes away makes the next read raise :class:`ClientDisconnected` (an OSError);
- each item of the response iterable is one ``http.response.body`` sent from
  the worker thread, which waits until the loop has taken it: Watt's flow
  control holds the thread back when the client reads slowly, so a streamed
  download stays bounded too; once the request body is read, a client that
  goes away makes the next send raise ClientDisconnected inside the
  iteration, and ``close()`` is called in every case;
- lifespan start-up and shut-down are accepted; shut-down stops the pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import inspect
import os
import re
import sys
import threading
import time
from urllib.parse import unquote_to_bytes

from watt.capability import Capability, CapabilityError, import_app

__all__ = ["DEFAULT_THREADS", "ClientDisconnected", "WSGIBridge", "build_environ", "load"]

DEFAULT_THREADS = 10
SHUTDOWN_TIMEOUT = 5.0  # seconds lifespan shut-down waits for the pool's threads


class ClientDisconnected(OSError):
    """The client went away (or the request was cancelled) while the WSGI app ran."""


# -- detection (main interpreter: read files, never import) ---------------------------
_WSGI_FUNCTION = re.compile(
    r"^def\s+(app|application)\s*\(\s*environ\b[^)]*\bstart_response\b", re.MULTILINE)


def read_source(path: str, filename: str) -> str | None:
    full = os.path.join(path, filename)
    if not os.path.isfile(full):
        return None
    with open(full, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def defines(text: str, attr: str) -> bool:
    """A top-level assignment, ``def`` or ``class`` of ``attr`` in ``text``."""
    return re.search(rf"^(?:{attr}\s*(?::[^=\n]*)?=[^=]|(?:async\s+)?def\s+{attr}\s*\("
                     rf"|class\s+{attr}\b)", text, re.MULTILINE) is not None


def detect(path: str) -> dict | None:
    text = read_source(path, "wsgi.py")
    if text is not None:
        for attr in ("application", "app"):
            if defines(text, attr):
                return {"app": f"wsgi:{attr}"}
    for filename in ("main.py", "app.py"):
        text = read_source(path, filename)
        match = _WSGI_FUNCTION.search(text) if text is not None else None
        if match:
            return {"app": f"{filename[:-3]}:{match.group(1)}"}
    return None


# -- loading (inside the worker) -------------------------------------------------------
def load(options: dict) -> WSGIBridge:
    """Import the WSGI callable named by ``options["app"]`` and bridge it to ASGI."""
    return load_bridged(options, "wsgi.py:application, or main.py/app.py with "
                                 "def app(environ, start_response)")


def load_bridged(options: dict, looked_for: str) -> WSGIBridge:
    """The WSGI app of ``options["app"]`` behind the bridge; ``looked_for`` says
    what detection tried, for the error when nothing was found."""
    spec = options.get("app")
    if not spec:
        raise CapabilityError(f"no `app` given and none found ({looked_for})",
                              code="WATT_CAPABILITY_UNDETECTED")
    return WSGIBridge(import_wsgi(spec), options.get("threads") or DEFAULT_THREADS)


def import_wsgi(spec: str):
    try:
        app = import_app(spec)
    except CapabilityError as exc:
        if exc.code == "WATT_APP_NOT_ASGI":
            raise CapabilityError(f"{spec!r} is not callable, so not a WSGI application",
                                  code=exc.code) from None
        raise
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__):
        raise CapabilityError(f"{spec!r} is an async (ASGI) application, not a WSGI one: "
                              "set `kind` to \"asgi\"", code="WATT_APP_IMPORT_FAILED")
    return app


# -- environ ---------------------------------------------------------------------------
def _latin1(text: str) -> str:
    """PEP 3333 'bytes as str': the UTF-8 bytes of ``text``, one code point per byte."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def build_environ(scope: dict, body) -> dict:
    """The WSGI environ of an ASGI HTTP scope (PEP 3333)."""
    root = scope.get("root_path") or ""
    raw_path = scope.get("raw_path")
    if raw_path:
        path = unquote_to_bytes(raw_path).decode("latin-1")
    else:
        path = _latin1(scope["path"])
    script_name = _latin1(root)
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name):]
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme") or "http",
        "wsgi.input": body,
        # The body ends where our reads return b"": chunked uploads work too.
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "asgi.scope": scope,
    }
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").upper()
        if "_" in key:
            continue  # X_Y would pose as X-Y: dropped, as gunicorn and nginx do
        key = key.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
        environ[key] = text
    server = scope.get("server")
    if server:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = str(server[0]), str(server[1] or 80)
    else:
        host, _, port = environ.get("HTTP_HOST", "localhost").rpartition(":")
        if not host or not port.isdigit():
            host, port = environ.get("HTTP_HOST", "localhost"), ""
        environ["SERVER_NAME"] = host
        environ["SERVER_PORT"] = port or ("443" if environ["wsgi.url_scheme"] == "https" else "80")
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
    return environ


# -- one request, both sides -----------------------------------------------------------
class _Exchange:
    """One request: the loop side (receive/send) and the WSGI thread's view of it.

    Every call from the thread to the loop goes through :meth:`call`, which an
    :meth:`abort` (the request task was cancelled) turns into a
    ClientDisconnected at once, even when the loop will never run it: a thread
    left waiting would keep its interpreter from ever being destroyed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, receive, send, first: dict) -> None:
        self.loop = loop
        self.receive = receive
        self._send = send
        self.input = _Input(self, first)
        self.status: int | None = None
        self.headers: list | None = None
        self.remaining: int | None = None  # Content-Length still to send, when declared
        self.headers_sent = False
        self.ended = False
        self.disconnected = False
        self._watch: asyncio.Task | None = None
        self._pending: concurrent.futures.Future | None = None
        self._aborted = False

    # thread side --------------------------------------------------------------------
    def call(self, coro):
        """Run ``coro`` on the loop and wait for it, from the WSGI thread."""
        if self._aborted:
            coro.close()
            raise ClientDisconnected("the request was cancelled")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed: the worker is going away
            coro.close()
            raise ClientDisconnected("the worker is stopping") from None
        self._pending = future
        if self._aborted:
            future.cancel()
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ClientDisconnected("the request was cancelled") from None
        finally:
            self._pending = None

    def start_response(self, status: str, headers: list, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info")
        code = status.split(" ", 1)[0]
        if len(code) != 3 or not code.isdigit():
            raise ValueError(f"WSGI status {status!r} does not start with a 3-digit code")
        encoded, remaining = [], None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length" and value.strip().isdigit():
                remaining = int(value)
            encoded.append((lower.encode("latin-1"), value.encode("latin-1")))
        self.status, self.headers, self.remaining = int(code), encoded, remaining
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's legacy ``write()``: sends at once and returns once sent."""
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        if data:
            self.emit(bytes(data))

    def emit(self, body: bytes, last: bool = False) -> None:
        if self.ended:
            return  # past the declared Content-Length: dropped, as gunicorn does
        if self.remaining is not None:
            body = body[: self.remaining]
            self.remaining -= len(body)
            last = last or self.remaining == 0
        start = None
        if not self.headers_sent:
            if self.status is None:
                raise AssertionError("the application returned a body before start_response()")
            start = {"type": "http.response.start", "status": self.status,
                     "headers": self.headers}
            self.headers_sent = True
        self.ended = last
        self.call(self._deliver(start, body, not last))

    def run(self, app, environ: dict) -> None:
        """The WSGI call itself, on a pool thread."""
        result = app(environ, self.start_response)
        try:
            for chunk in result:
                if chunk:
                    self.emit(chunk)
            if not self.ended:
                self.emit(b"", last=True)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    # loop side ----------------------------------------------------------------------
    async def _deliver(self, start: dict | None, body: bytes, more: bool) -> None:
        if self._watch is not None and self._watch.done():
            self.disconnected = True
            raise ClientDisconnected("the client went away")
        if start is not None:
            await self._send(start)
        await self._send({"type": "http.response.body", "body": body, "more_body": more})
        if more and self._watch is None and self.input.eof:
            # The body is read, so the next receive() can only say that the
            # client left: a streaming response then stops at its next item.
            self._watch = self.loop.create_task(self._watch_disconnect())

    async def _watch_disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    def abort(self) -> None:
        self._aborted = True
        pending = self._pending
        if pending is not None:
            pending.cancel()

    def finish(self) -> None:
        watch = self._watch
        if watch is not None:
            if not watch.done():
                watch.cancel()
            elif not watch.cancelled():
                watch.exception()  # retrieved: a failed receive() is not worth a warning


class _Input:
    """``wsgi.input``: the request body, pulled from ``receive`` one chunk at a time."""

    def __init__(self, exchange: _Exchange, first: dict) -> None:
        self._exchange = exchange
        self._buffer = bytearray()
        self.eof = False
        self._lost = False
        self._take(first)

    def _take(self, message: dict) -> None:
        if message["type"] == "http.disconnect":
            self.eof = self._lost = self._exchange.disconnected = True
            return
        self._buffer += message.get("body", b"")
        self.eof = not message.get("more_body", False)

    def _fill(self) -> bool:
        """Read one more chunk; False at the end of the body."""
        if not self._lost:
            if self.eof:
                return False
            self._take(self._exchange.call(self._exchange.receive()))
        if self._lost:
            raise ClientDisconnected("the client went away before the body was read")
        return True

    def _cut(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._cut(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._cut(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = None if size is None or size < 0 else size
        start = 0
        while True:
            end = self._buffer.find(b"\n", start, limit)
            if end >= 0:
                return self._cut(end + 1)
            if limit is not None and len(self._buffer) >= limit:
                return self._cut(limit)
            start = len(self._buffer)
            if not self._fill():
                return self._cut(len(self._buffer))

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        while line := self.readline():
            yield line

    def close(self) -> None:
        pass


# -- the ASGI side ---------------------------------------------------------------------
class WSGIBridge:
    """An ASGI 3 application that runs a WSGI one on a pool of ``threads`` threads."""

    def __init__(self, app, threads: int = DEFAULT_THREADS) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise CapabilityError(f"`threads` must be a whole number >= 1, not {threads!r}")
        self.app = app
        self.threads = threads
        self._started: list[threading.Thread] = []
        self.executor: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(
                threads, thread_name_prefix="watt-wsgi",
                initializer=lambda: self._started.append(threading.current_thread())))

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect; closing before accept refuses it (403)
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise RuntimeError(f"a WSGI application cannot serve {kind!r} scopes")

    async def _http(self, scope: dict, receive, send) -> None:
        if self.executor is None:
            raise RuntimeError("the WSGI thread pool is shut down: the worker is stopping")
        loop = asyncio.get_running_loop()
        # The first body chunk usually travels with the request: read it here,
        # so a small body costs the WSGI thread no round trip to the loop.
        exchange = _Exchange(loop, receive, send, await receive())
        environ = build_environ(scope, exchange.input)
        context = contextvars.copy_context()  # request id / trace reach mesh calls
        try:
            await loop.run_in_executor(self.executor, context.run, exchange.run,
                                       self.app, environ)
        except asyncio.CancelledError:
            exchange.abort()
            raise
        except ClientDisconnected:
            if not exchange.disconnected:
                raise
        finally:
            exchange.finish()

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop the pool and wait (up to ``timeout``, off the loop) for its threads to end.

        In-flight requests were drained before lifespan shut-down.  The pool's
        threads must also be gone from memory: at interpreter teardown
        concurrent.futures joins every pool thread it still knows of, from the
        thread that destroys the interpreter, and that leaves a stray dummy
        thread behind in a subinterpreter (an "Exception ignored" at exit).
        """
        executor, self.executor = self.executor, None
        if executor is None:
            return
        executor.shutdown(wait=False, cancel_futures=True)
        del executor
        threads, self._started = self._started, []
        deadline = time.monotonic() + timeout

        def join(threads: list[threading.Thread]) -> None:
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))

        await asyncio.get_running_loop().run_in_executor(None, join, threads)
        stuck = [t.name for t in threads if t.is_alive()]
        threads.clear()
        # A reference cycle (a traceback's frames, say) can still hold a finished
        # pool thread: collect it now rather than at teardown.
        gc.collect()
        if stuck:
            print(f"[watt] WSGI threads still running application code after {timeout:.0f} s: "
                  f"{', '.join(stuck)}; the worker cannot end until they return",
                  file=sys.stderr, flush=True)


capability = Capability(
    name="wsgi",
    loader="capabilities.wsgi:load",
    detect=detect,
    isolation="auto",
    priority=5,
    description="any WSGI application, on a thread pool (threads, default 10)",
)
