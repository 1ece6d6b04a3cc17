"""Flask applications, served through the WSGI bridge of ``capabilities/wsgi.py``.

Config keys: ``app`` (``"module:attr"`` or ``"module:create_app()"``,
detected when absent), ``threads`` (threads that run Flask's code in each
worker, default 10), ``workers``, ``isolation`` and ``env``.

Detection (reads files, never imports them): the first of ``wsgi.py``,
``app.py``, ``main.py``, ``server.py`` (Flask's own order first) that
imports flask and defines ``app`` or ``application`` at top level, else a
``create_app()`` / ``make_app()`` factory in such a file.

Flask, Werkzeug, Jinja2, MarkupSafe (its C speed-ups included), itsdangerous
and blinker load in a subinterpreter (checked on CPython 3.13), so the
isolation is ``auto``: a subinterpreter unless one of the app's own imports
refuses, then a process.
"""

from __future__ import annotations

import re

from watt.capability import Capability

from .wsgi import WSGIBridge, defines, load_bridged, read_source

_IMPORTS_FLASK = re.compile(r"^\s*(?:from\s+flask[\s.]|import\s+flask\b)", re.MULTILINE)
_FILES = ("wsgi.py", "app.py", "main.py", "server.py")


def detect(path: str) -> dict | None:
    texts = [(name, read_source(path, name)) for name in _FILES]
    texts = [(name, text) for name, text in texts if text and _IMPORTS_FLASK.search(text)]
    for name, text in texts:
        for attr in ("app", "application"):
            if defines(text, attr):
                return {"app": f"{name[:-3]}:{attr}"}
    for name, text in texts:
        for factory in ("create_app", "make_app"):
            if re.search(rf"^def\s+{factory}\s*\(\s*\)", text, re.MULTILINE):
                return {"app": f"{name[:-3]}:{factory}()"}
    return None


def load(options: dict) -> WSGIBridge:
    """Import the Flask app named by ``options["app"]`` and bridge it to ASGI."""
    return load_bridged(options, "app.py/main.py/wsgi.py that imports flask and defines "
                                 "`app` or `create_app()`")


capability = Capability(
    name="flask",
    loader="capabilities.flask:load",
    detect=detect,
    isolation="auto",
    priority=10,
    description="Flask application, on a thread pool (threads, default 10)",
)
