"""A Flask application for tests/test_wsgi.py: detected as `flask` (app.py imports flask).

It answers the same routes as tests/apps/wsgi_app, plus Flask's own 404.
"""

import hashlib
import os
import sys
import threading

import requests
from flask import Flask, Response, jsonify, request

NAME = os.environ.get("APP_NAME", "flask")
WINDOW = 1.0  # seconds /slow waits for a third concurrent request to show up
_cond = threading.Condition()
_count = {"active": 0, "entered": 0, "max": 0}

app = Flask(__name__)


def _memory(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


@app.get("/")
def home():
    return f"hello from {NAME}"


@app.get("/env")
@app.get("/env/<path:rest>")
def env(rest=""):
    import _interpreters

    keys = ("REQUEST_METHOD", "SCRIPT_NAME", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
            "REMOTE_ADDR", "SERVER_PROTOCOL", "HTTP_X_MULTI", "HTTP_HOST", "wsgi.url_scheme")
    return {"path": request.path, "query": request.args.to_dict(), "pid": os.getpid(),
            "interpreter": _interpreters.get_current()[0],
            "errors_is_stderr": request.environ["wsgi.errors"] is sys.stderr,
            "x_under": "HTTP_X_UNDER" in request.environ,
            **{k: request.environ.get(k) for k in keys}}


@app.post("/form")
def form():
    return {k: request.form.getlist(k) for k in request.form}


@app.post("/json")
def json_echo():
    return {"got": request.get_json(), "type": request.content_type}


@app.post("/upload")
def upload():
    total, digest = 0, hashlib.sha256()
    while chunk := request.stream.read(65536):
        total += len(chunk)
        digest.update(chunk)
    return {"bytes": total, "sha256": digest.hexdigest()}


@app.get("/download")
def download():
    size, piece = int(request.args["size"]), b"d" * 65536
    chunks = (piece[: min(65536, size - sent)] for sent in range(0, size, 65536))
    return Response(chunks, mimetype="application/octet-stream")


@app.get("/cookies")
def cookies():
    response = jsonify(ok=True)
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@app.get("/boom")
def boom():
    raise RuntimeError("boom: secret-token-123")


@app.get("/slow")
def slow():
    """Records how many requests run the app's code at once (see WINDOW)."""
    with _cond:
        _count["active"] += 1
        _count["entered"] += 1
        _count["max"] = max(_count["max"], _count["active"])
        _cond.notify_all()
        _cond.wait_for(lambda: _count["active"] >= 3 or _count["entered"] >= 3, timeout=WINDOW)
        _count["active"] -= 1
        return {"max": _count["max"]}


@app.get("/mesh")
def mesh():
    # A sync client on a worker thread: no socket, the mesh answers.
    reply = requests.get("http://peer.plt.local/headers", timeout=30)
    return {"status": reply.status_code, "peer": reply.json()}


@app.get("/mem/reset")
def mem_reset():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return {"rss": _memory("VmRSS")}


@app.get("/mem")
def mem():
    return {"hwm": _memory("VmHWM")}
