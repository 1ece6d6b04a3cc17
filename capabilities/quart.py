"""Quart applications: ``kind: "quart"``, in a subinterpreter.

Config keys: ``path`` (the folder), ``app`` (``"module:attr"`` or
``"module:factory()"``; detected when absent), ``workers``, ``env``,
``isolation``.

Isolation ``"auto"``: Quart and what it imports (flask, werkzeug, click,
jinja2, markupsafe with its C speedups, itsdangerous, blinker, aiofiles,
hypercorn) load in a subinterpreter (checked with CPython 3.13.0, quart
0.23), so workers are subinterpreters; an application that also imports a
module that refuses them (orjson, pydantic-core, ...) falls back to a
process, saying so in the log.

Detection (reads files, never imports them): ``main.py``, ``app.py`` or
``asgi.py`` that imports ``quart`` and defines ``app`` or ``application``,
or a ``create_app()`` factory (Quart's and Flask's convention).
"""

from __future__ import annotations

from watt.capability import Capability, framework_app


def detect(path: str) -> dict | None:
    return framework_app(path, "quart")


capability = Capability(
    name="quart",
    loader="capabilities.asgi:load",
    detect=detect,
    isolation="auto",
    priority=20,
    description="Quart application (module:attr)",
)
