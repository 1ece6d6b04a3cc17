"""A plain WSGI application for tests/test_wsgi.py (no framework): detected as `wsgi`.

The Flask app in tests/apps/flask_app answers the same routes, so one test
runs against both.
"""

import hashlib
import json
import os
import sys
import threading
import urllib.request
from urllib.parse import parse_qs

NAME = os.environ.get("APP_NAME", "wsgi")
WINDOW = 1.0  # seconds /slow waits for a third concurrent request to show up
_cond = threading.Condition()
_active = _entered = _max = 0
_events: list[str] = []  # what the app saw of clients that went away


def _json(start_response, payload, status="200 OK", headers=()):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))), *headers])
    return [body]


def _memory(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def slow():
    """Records how many requests run the app's code at once (see WINDOW)."""
    global _active, _entered, _max
    with _cond:
        _active += 1
        _entered += 1
        _max = max(_max, _active)
        _cond.notify_all()
        _cond.wait_for(lambda: _active >= 3 or _entered >= 3, timeout=WINDOW)
        _active -= 1
        return _max


def application(environ, start_response):
    path = environ["PATH_INFO"].encode("latin-1").decode("utf-8")
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello from ", NAME.encode()]
    if path.startswith("/env"):
        import _interpreters

        keys = ("REQUEST_METHOD", "SCRIPT_NAME", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                "REMOTE_ADDR", "SERVER_PROTOCOL", "HTTP_X_MULTI", "HTTP_HOST", "wsgi.url_scheme")
        return _json(start_response, {
            "path": path, "query": query, "pid": os.getpid(),
            "interpreter": _interpreters.get_current()[0], "errors_is_stderr":
            environ["wsgi.errors"] is sys.stderr, "x_under": "HTTP_X_UNDER" in environ,
            **{k: environ.get(k) for k in keys}})
    if path == "/form":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(size).decode())
        return _json(start_response, {k: v for k, v in form.items()})
    if path == "/json":
        data = json.loads(environ["wsgi.input"].read())
        return _json(start_response, {"got": data, "type": environ["CONTENT_TYPE"]})
    if path == "/upload":
        total, digest, stream = 0, hashlib.sha256(), environ["wsgi.input"]
        try:
            while chunk := stream.read(65536):
                total += len(chunk)
                digest.update(chunk)
        except OSError as exc:
            _event(f"upload cut after {total} bytes: {type(exc).__name__}")
            raise
        return _json(start_response, {"bytes": total, "sha256": digest.hexdigest()})
    if path == "/download":
        size, piece = int(query["size"]), b"d" * 65536
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (piece[: min(65536, size - sent)] for sent in range(0, size, 65536))
    if path == "/cookies":
        return _json(start_response, {"ok": True},
                     headers=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
    if path == "/boom":
        raise RuntimeError("boom: secret-token-123")
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Dropped", "yes")])
        try:
            raise ValueError("handled")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"replaced"]
    if path == "/slow":
        return _json(start_response, {"max": slow()})
    if path == "/mesh":
        with urllib.request.urlopen("http://peer.plt.local/headers", timeout=30) as reply:
            return _json(start_response, {"status": reply.status, "peer": json.load(reply)})
    if path == "/mem/reset":
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _json(start_response, {"rss": _memory("VmRSS")})
    if path == "/mem":
        return _json(start_response, {"hwm": _memory("VmHWM")})
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Endless()
    if path == "/events":
        def seen():
            return [e for e in _events if e.startswith(query["prefix"])]

        with _cond:
            _cond.wait_for(seen, timeout=30)
            return _json(start_response, seen())
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


class _Endless:
    """A response that never ends: only the client leaving stops it (then close())."""

    def __init__(self):
        self.sent = 0

    def __iter__(self):
        while True:
            self.sent += 1
            yield b"tick\n" * 1000

    def close(self):
        _event(f"endless closed after {self.sent} chunks")


def _event(text):
    with _cond:
        _events.append(text)
        _cond.notify_all()
