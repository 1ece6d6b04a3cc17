"""urllib3 v2 (and so requests) on the mesh.

We replace ``HTTPConnectionPool._make_request``, the one place where a pool
turns a request into bytes on a connection, rather than ``urlopen``: that
keeps urllib3's own retries, redirects, ``Retry`` status handling and pool
bookkeeping for mesh calls.  The pool's connection object is created but
never connected, so no socket is opened.  The response is a real
``urllib3.HTTPResponse`` over a :class:`MeshBody`, so ``preload_content``,
``stream()``, ``read(amt)`` and content decoding are urllib3's own.

Mesh failures surface as the errors a socket would give, with the WATT code
in the message: ``NewConnectionError`` when the request reached no
application, ``ReadTimeoutError`` for ``WATT_MESH_TIMEOUT``, ``ProtocolError``
otherwise — which requests turns into ``ConnectionError`` / ``ReadTimeout``.
"""

from __future__ import annotations

import inspect
import io
import threading

from . import mesh_client as mc
from . import outbound as out
from .mesh_urllib import MeshBody, reason_phrase, send_sync

#: Codes meaning the request reached no application: a failed connect, safe to retry.
NOT_DELIVERED = frozenset({"WATT_MESH_UNKNOWN_APP", "WATT_NO_WORKER",
                           "WATT_MESH_UNAVAILABLE", "WATT_MESH_SYNC_IN_LOOP"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _header_pairs(headers) -> list[tuple[bytes, bytes]]:
    def raw(text) -> bytes:
        return text if isinstance(text, bytes) else str(text).encode("latin-1")

    items = headers.iteritems() if hasattr(headers, "iteritems") else headers.items()
    return [(raw(name).lower(), raw(value)) for name, value in items]


def patch(urllib3) -> None:
    if getattr(urllib3, "_watt_mesh", False):
        return
    urllib3._watt_mesh = True
    if not urllib3.__version__.startswith("2."):
        return  # urllib3 1.x has another _make_request; only v2 is supported

    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError
    from urllib3.util import SKIP_HEADER, Timeout
    from urllib3.util.request import body_to_chunks
    from urllib3.util.url import parse_url

    original = HTTPConnectionPool._make_request
    signature = inspect.signature(original)
    user_agent = f"python-urllib3/{urllib3.__version__}".encode()

    def target(pool, url: str):
        """(host, port, request target); an HTTP proxy's pool gets absolute URLs."""
        if url.startswith("/"):
            return pool.host, pool.port, url
        parsed = parse_url(url)
        return parsed.host, parsed.port, parsed.request_uri

    def request_headers(pool, host, port, headers, body, method, chunked):
        """The headers urllib3's HTTPConnection.request would have sent."""
        pairs = _header_pairs(headers or {})
        names = {name for name, _ in pairs}
        pairs = [(n, v) for n, v in pairs if v != SKIP_HEADER.encode()]
        if b"host" not in names:
            default = port is None or port == _DEFAULT_PORTS.get(pool.scheme)
            pairs.append((b"host", (host if default else f"{host}:{port}").encode("ascii")))
        if b"user-agent" not in names:
            pairs.append((b"user-agent", user_agent))
        chunks, length = body_to_chunks(body, method=method, blocksize=65536)
        if b"content-length" not in names and b"transfer-encoding" not in names:
            if chunked or (length is None and chunks is not None):
                pairs.append((b"transfer-encoding", b"chunked"))
            elif length is not None:
                pairs.append((b"content-length", str(length).encode()))
        body_bytes = (c.encode() if isinstance(c, str) else bytes(c) for c in chunks or ())
        return pairs, body_bytes

    def mesh_request(pool, conn, method, url, a):
        host, port, path = target(pool, url)
        pool.num_requests += 1
        timeout = pool._get_timeout(a["timeout"])
        timeout.start_connect()
        read_timeout = Timeout.resolve_default_timeout(timeout.read_timeout)
        pairs, chunks = request_headers(pool, host, port, a["headers"], a["body"], method,
                                        a["chunked"])
        hostport = host if port is None else f"{host}:{port}"

        def error(exc: mc.MeshCallError) -> Exception:
            if exc.code == "WATT_MESH_TIMEOUT":
                return ReadTimeoutError(pool, url, f"Read timed out. ({exc})")
            if exc.code in NOT_DELIVERED:
                return NewConnectionError(conn, str(exc))
            return ProtocolError(f"Connection broken: {exc}")

        try:
            call, status, reply, first, more = send_sync(
                method, hostport, path.encode("ascii"), pairs, chunks, read_timeout)
        except mc.MeshCallError as exc:
            raise error(exc) from None
        headers = urllib3.HTTPHeaderDict()
        for name, value in reply:
            headers.add(name.decode("latin-1"), value.decode("latin-1"))
        return urllib3.HTTPResponse(
            body=MeshBody(call, first, more, read_timeout, error), headers=headers,
            status=status, version=11, reason=reason_phrase(status),
            preload_content=a["preload_content"], decode_content=a["decode_content"],
            pool=pool, connection=a["response_conn"], retries=a["retries"],
            enforce_content_length=a["enforce_content_length"],
            request_method=method, request_url=url)

    def _make_request(self, conn, method, url, *args, **kwargs):
        if not mc.is_mesh_host(target(self, url)[0]):
            return original(self, conn, method, url, *args, **kwargs)
        bound = signature.bind(self, conn, method, url, *args, **kwargs)
        bound.apply_defaults()
        return mesh_request(self, conn, method, url, bound.arguments)

    HTTPConnectionPool._make_request = _make_request
    _patch_urlopen(urllib3, HTTPConnectionPool, target)


def _patch_urlopen(urllib3, pool_class, target) -> None:
    """The outbound pipeline around ``urlopen``: the whole request, once (urllib3's own
    retries and redirects re-enter ``urlopen`` on the same thread and pass through)."""
    from urllib3.util import Timeout

    original = pool_class.urlopen
    signature = inspect.signature(original)
    inside = threading.local()

    def absolute(pool, url: str) -> str:
        if not url.startswith("/"):
            return url  # an HTTP proxy's pool
        default = pool.port is None or pool.port == _DEFAULT_PORTS.get(pool.scheme)
        return f"{pool.scheme}://{pool.host if default else f'{pool.host}:{pool.port}'}{url}"

    def read_timeout(pool, timeout) -> float | None:
        timeout = pool._get_timeout(timeout)
        for value in (timeout._read, timeout.total):
            if isinstance(value, (int, float)):
                return float(value)
        return None

    def urlopen(self, method, url, *args, **kwargs):
        if getattr(inside, "active", False) or not out.wanted(target(self, url)[0]):
            return original(self, method, url, *args, **kwargs)
        bound = signature.bind(self, method, url, *args, **kwargs)
        a = bound.arguments
        body = a.get("body")
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (bytes, bytearray, memoryview)) or body is None:
            body = bytes(body or b"")
        else:
            body = None  # a file or an iterator: read once
        headers = a.get("headers")
        timeout = a.get("timeout", Timeout.DEFAULT_TIMEOUT)
        request = out.Request(method, absolute(self, url),
                              (self.headers if headers is None else headers).items(), body,
                              read_timeout(self, timeout), False)

        def send(req: out.Request) -> out.Response:
            if req.headers.touched:
                a["headers"] = urllib3.HTTPHeaderDict()
                for name, value in req.headers:
                    a["headers"].add(name, value)
            if req.timeout is not None and req.timeout != read_timeout(self, timeout):
                a["timeout"] = req.timeout
            inside.active = True
            try:
                response = original(*bound.args, **bound.kwargs)
            finally:
                inside.active = False

            def discard() -> None:
                response.drain_conn()
                response.release_conn()

            return out.Response(response.status, response.headers.items(), None,
                                native=response, discard=discard, read=lambda: response.data)

        def build(response: out.Response):
            headers = urllib3.HTTPHeaderDict()
            for name, value in response.headers:
                headers.add(name, value)
            return urllib3.HTTPResponse(
                body=io.BytesIO(response.body or b""), headers=headers,
                status=response.status, version=11, reason=reason_phrase(response.status),
                preload_content=a.get("preload_content", True), decode_content=False,
                request_method=method, request_url=url)

        return out.call_sync(request, send, build)

    pool_class.urlopen = urlopen
