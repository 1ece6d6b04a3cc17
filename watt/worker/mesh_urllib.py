"""urllib.request on the mesh: ``urlopen("http://b.plt.local/...")`` goes over the channel.

Every opener (``urlopen``, ``build_opener()``) ends in ``HTTPHandler.http_open``
(or ``HTTPSHandler.https_open``).  For a mesh host we answer right there with
an object shaped like ``http.client.HTTPResponse``, so everything urllib does
above that point — ``HTTPError`` for 4xx/5xx, redirects, cookies — runs
unchanged.  Mesh failures become ``URLError``, as a refused connection would.

The synchronous plumbing (:func:`send_sync`, :class:`MeshBody`) is shared
with the urllib3 adapter: both drive a :class:`MeshCall` on the worker's loop
from the client's own thread through :func:`mesh_client.run_sync`.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import itertools
from http import HTTPStatus
from urllib.parse import urlsplit

from watt.channel.endpoint import StreamClosed

from . import mesh_client as mc
from . import outbound as out


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def cancel_soon(call) -> None:
    """Abandon ``call`` from any thread (MeshCall is only touched on its loop)."""
    if not call.done and mc._loop is not None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            mc._loop.call_soon_threadsafe(call.cancel)


async def _open(method, host, raw_path, headers, first, more):
    call = mc.MeshCall()
    await call.start(method, host, raw_path, headers, first, more)
    return call


def send_sync(method: str, host: str, raw_path: bytes, headers: list, chunks,
              timeout: float | None) -> tuple:
    """Send a request from a client thread and wait for its head.

    ``chunks`` is an iterable of bytes, read on this thread (it may be a file
    or a generator).  One chunk of look-ahead lets a one-piece body ride in
    the REQUEST frame.  Returns ``(call, status, header_pairs, first, more)``.
    """
    it = iter(chunks)
    first = next(it, b"")
    second = next(it, None)
    call = mc.run_sync(_open, method, host, raw_path, tuple(headers), first, second is not None)
    try:
        if second is not None:
            # StreamClosed: the target answered or failed early; its reply says which.
            with contextlib.suppress(StreamClosed):
                for chunk in itertools.chain((second,), it):
                    if chunk:
                        mc.run_sync(call.send_body, chunk, True)
                mc.run_sync(call.send_body, b"", False)
        return (call, *mc.run_sync(call.response, timeout))
    except BaseException:
        cancel_soon(call)
        raise


class MeshBody(io.RawIOBase):
    """A response body as a raw file: chunks are pulled over the channel as it is read.

    ``error`` maps a :class:`MeshCallError` met mid-body to the exception the
    client raises for a broken connection.
    """

    def __init__(self, call, first: bytes, more: bool, timeout, error) -> None:
        self.call, self.more, self.timeout, self.error = call, more, timeout, error
        self.buf = memoryview(first)

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self.buf and self.more:
            try:
                chunk, self.more = mc.run_sync(self.call.next_chunk, self.timeout)
            except mc.MeshCallError as exc:
                self.more = False
                raise self.error(exc) from None
            self.buf = memoryview(chunk)

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

    def readall(self) -> bytes:
        parts = []
        while True:
            self._fill()
            if not self.buf:
                return b"".join(parts)
            parts.append(bytes(self.buf))
            self.buf = memoryview(b"")

    def close(self) -> None:
        if not self.closed:
            cancel_soon(self.call)
        super().close()


class MeshResponse:
    """What ``http_open`` returns: the ``http.client.HTTPResponse`` surface urllib users rely on."""

    def __init__(self, fp, headers: http.client.HTTPMessage, url: str, status: int) -> None:
        self.fp, self.headers, self.url = fp, headers, url
        self.status = self.code = status
        self.reason = self.msg = reason_phrase(status)
        self.version = 11

    def __getattr__(self, name):  # read, read1, readline, readinto, peek, close, closed...
        return getattr(self.fp, name)

    def __iter__(self):
        return iter(self.fp)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fp.close()

    def info(self):
        return self.headers

    def geturl(self) -> str:
        return self.url

    def getcode(self) -> int:
        return self.status

    def isclosed(self) -> bool:
        return self.fp.closed

    def getheader(self, name: str, default=None):
        values = self.headers.get_all(name)
        return ", ".join(values) if values else default

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.headers.items())


def _body_chunks(data):
    """``Request.data`` as bytes chunks, the forms ``http.client`` accepts."""
    if data is None:
        return ()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return (bytes(data),)
    if hasattr(data, "read"):
        def read():
            while block := data.read(65536):
                yield block.encode("iso-8859-1") if isinstance(block, str) else block
        return read()
    return (bytes(chunk) for chunk in data)


def _read_error(exc: mc.MeshCallError) -> OSError:
    return TimeoutError(str(exc)) if exc.code == "WATT_MESH_TIMEOUT" else ConnectionError(str(exc))


def mesh_open(req, URLError):
    """Serve one ``urllib.request.Request`` for a mesh host."""
    parts = urlsplit(req.full_url)
    netloc = parts.netloc.rpartition("@")[2]
    raw_path = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode("ascii")
    headers = [(name.lower().encode("latin-1"), str(value).encode("latin-1"))
               for name, value in req.header_items()]
    if not any(name == b"host" for name, _ in headers):
        headers.append((b"host", netloc.encode("latin-1")))
    timeout = req.timeout if isinstance(req.timeout, (int, float)) else None
    try:
        call, status, pairs, first, more = send_sync(
            req.get_method(), netloc, raw_path, headers, _body_chunks(req.data), timeout)
    except mc.MeshCallError as exc:
        # urllib reports a socket timeout as URLError(reason=TimeoutError).
        raise URLError(_read_error(exc) if exc.code == "WATT_MESH_TIMEOUT" else exc) from None
    message = http.client.HTTPMessage()
    for name, value in pairs:
        message[name.decode("latin-1")] = value.decode("latin-1")
    body = io.BufferedReader(MeshBody(call, first, more, timeout, _read_error))
    return MeshResponse(body, message, req.full_url, status)


def _via_pipeline(handler, req, original, URLError):
    """One ``urllib.request.Request`` through the outbound pipeline (mesh or not)."""
    data = req.data
    if data is None or isinstance(data, (bytes, bytearray, memoryview)):
        body = bytes(data or b"")
    else:
        body = None  # a file or an iterable: read once
    timeout = req.timeout if isinstance(req.timeout, (int, float)) else None
    outgoing = out.Request(req.get_method(), req.full_url, req.header_items(), body, timeout,
                           False)
    forwarded = set(req.headers)  # the others are not repeated on a redirect

    def send(r: out.Request) -> out.Response:
        if r.headers.touched:
            headers, unredirected = {}, {}
            for name, value in r.headers:
                key = name.capitalize()
                (headers if key in forwarded else unredirected)[key] = value
            req.headers, req.unredirected_hdrs = headers, unredirected
        if r.timeout is not None:
            req.timeout = r.timeout
        response = mesh_open(req, URLError) if r.mesh else original(handler, req)
        return out.Response(response.status, response.headers.items(), None, native=response,
                            discard=response.close, read=response.read)

    def build(response: out.Response) -> MeshResponse:
        message = http.client.HTTPMessage()
        for name, value in response.headers:
            message[name] = value
        return MeshResponse(io.BytesIO(response.body or b""), message, req.full_url,
                            response.status)

    return out.call_sync(outgoing, send, build)


def patch(request) -> None:
    """Route mesh hosts in ``HTTPHandler.http_open`` / ``HTTPSHandler.https_open``."""
    if getattr(request, "_watt_mesh", False):
        return
    request._watt_mesh = True
    for cls, name in ((request.HTTPHandler, "http_open"),
                      (getattr(request, "HTTPSHandler", None), "https_open")):
        if cls is None:  # no ssl module: no HTTPSHandler
            continue

        def opener(self, req, _original=getattr(cls, name)):
            host = urlsplit(req.full_url).hostname
            if out.wanted(host):
                return _via_pipeline(self, req, _original, request.URLError)
            if mc.is_mesh_host(host):
                return mesh_open(req, request.URLError)
            return _original(self, req)

        setattr(cls, name, opener)
