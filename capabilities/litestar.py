"""Litestar applications: ``kind: "litestar"``, always in a child process.

Config keys: ``path`` (the folder), ``app`` (``"module:attr"`` or
``"module:factory()"``; detected when absent), ``workers``, ``env``,
``isolation``.

Isolation ``"process"``: Litestar is built on msgspec, whose compiled module
refuses subinterpreters (checked with CPython 3.13.0, litestar 2.25,
msgspec 0.22: ``ImportError: module _core does not support loading in
subinterpreters``).  With ``isolation: auto`` the application goes straight
to a process; the other applications keep their subinterpreters.

Detection (reads files, never imports them): ``main.py``, ``app.py`` or
``asgi.py`` that imports ``litestar`` and defines ``app`` or ``application``,
or a ``create_app()`` factory (the names Litestar's own CLI looks for).
"""

from __future__ import annotations

from watt.capability import Capability, framework_app


def detect(path: str) -> dict | None:
    return framework_app(path, "litestar")


capability = Capability(
    name="litestar",
    loader="capabilities.asgi:load",
    detect=detect,
    isolation="process",
    priority=20,
    description="Litestar application (module:attr); runs in a process (msgspec)",
)
