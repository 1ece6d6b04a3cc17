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

import os
import re

from watt.capability import Capability

_FILES = ("main.py", "app.py", "asgi.py")
_ATTRS = ("app", "application")
_FACTORIES = ("create_app",)


def framework_app(path: str, framework: str) -> dict | None:
    """``{"app": "file:attr"}`` for the first conventional file that imports
    ``framework`` and defines an application (or a factory), else None.

    Shared by the framework capabilities (fastapi, litestar, quart): an import
    statement, not a mere mention, decides, so a Starlette app that names
    FastAPI in a comment stays a Starlette app.
    """
    imports = re.compile(
        rf"^[ \t]*(?:from[ \t]+{framework}(?:\.\w+)*[ \t]+import\b|import[ \t]+{framework}\b)",
        re.M)
    for filename in _FILES:
        full = os.path.join(path, filename)
        if not os.path.isfile(full):
            continue
        with open(full, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if not imports.search(text):
            continue
        for attr in _ATTRS:
            if re.search(rf"^(?:{attr}[ \t]*[:=]|(?:async[ \t]+)?def[ \t]+{attr}[ \t]*\()",
                         text, re.M):
                return {"app": f"{filename[:-3]}:{attr}"}
        for factory in _FACTORIES:
            if re.search(rf"^(?:async[ \t]+)?def[ \t]+{factory}[ \t]*\(", text, re.M):
                return {"app": f"{filename[:-3]}:{factory}()"}
    return None


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
