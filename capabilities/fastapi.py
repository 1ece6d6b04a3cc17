"""FastAPI applications: ``kind: "fastapi"``, always in a child process.

Config keys: ``path`` (the folder), ``app`` (``"module:attr"`` or
``"module:factory()"``; detected when absent), ``workers``, ``env``,
``isolation``.

Isolation ``"process"``: FastAPI needs pydantic-core, whose compiled module
refuses subinterpreters (checked with CPython 3.13.0, pydantic-core 2.50:
``ImportError: module pydantic_core._pydantic_core does not support loading in
subinterpreters``).  With ``isolation: auto`` the application goes straight
to a process instead of failing in a throwaway subinterpreter first; the
other applications of the runtime keep their subinterpreters.  An explicit
``isolation: subinterpreter`` is honoured, and fails with that ImportError.

Detection (reads files, never imports them): ``main.py``, ``app.py`` or
``asgi.py`` that imports ``fastapi`` and defines ``app`` or ``application``,
or a ``create_app()`` factory.
"""

from __future__ import annotations

from watt.capability import Capability, framework_app


def detect(path: str) -> dict | None:
    return framework_app(path, "fastapi")


capability = Capability(
    name="fastapi",
    loader="capabilities.asgi:load",
    detect=detect,
    isolation="process",
    priority=20,
    description="FastAPI application (module:attr); runs in a process (pydantic-core)",
)
