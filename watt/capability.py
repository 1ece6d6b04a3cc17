"""What a capability is: how Watt finds, loads and isolates one kind of application.

A capability module (``capabilities/<name>.py``, or a third party's package)
exposes a :class:`Capability` under the entry point group
``watt.capabilities``.  The main side uses ``detect`` and ``isolation``; the
worker imports ``loader`` (``"module:function"``) and calls it with the
application's options to get its ASGI callable.

This module runs on both sides, so it uses the standard library only.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Capability", "CapabilityError", "accept_lifespan", "find_app_file", "framework_app",
           "import_app"]


class CapabilityError(Exception):
    """A capability cannot load the application; ``code`` is a stable WATT_ code."""

    def __init__(self, message: str, code: str = "WATT_APP_IMPORT_FAILED") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Capability:
    """One kind of application.

    - ``name``: the ``kind`` users write in ``watt.json``.
    - ``loader``: ``"module:function"`` run inside the worker,
      ``function(options: dict) -> ASGI callable``.
    - ``detect(path) -> dict | None``: options (such as ``{"app": "main:app"}``)
      when the folder looks like this kind of application, else None.
    - ``isolation``: ``"auto"`` (try a subinterpreter, fall back to a process),
      ``"subinterpreter"`` or ``"process"`` (the framework cannot load in a
      subinterpreter).
    - ``priority``: higher is tried first when detecting (specific before generic).
    - ``build``: the build step ``watt build`` runs, if the kind has one.
    - ``needs_restart``: ``watt dev``'s hook, ``needs_restart(changed_files) -> bool``:
      whether running workers must restart to see those changes (None: always;
      the static kind serves files from disk as they are, so it never needs to).
    """

    name: str
    loader: str
    detect: Callable[[str], dict | None] = field(default=lambda path: None)
    isolation: str = "auto"
    priority: int = 0
    description: str = ""
    #: ``build(path, options) -> (exit status, output)``, run by ``watt build`` in the
    #: main process (e.g. Django's collectstatic); None when the kind needs no build.
    build: Callable[[str, dict], tuple[int, str]] | None = None
    #: ``needs_restart(changed files) -> bool`` for ``watt dev``; None: restart on any change.
    needs_restart: Callable[[list[str]], bool] | None = None


_CANDIDATES = (("main.py", "app"), ("app.py", "app"), ("asgi.py", "application"),
               ("asgi.py", "app"), ("server.py", "app"))


def find_app_file(path: str, must_contain: str | None = None) -> dict | None:
    """Find ``<file>:<attr>`` by convention (main.py:app, app.py:app, asgi.py:application).

    Only reads the files (an assignment or ``def`` of the attribute), never
    imports them: detection runs in the main interpreter, the app's imports
    belong in its own worker.
    """
    for filename, attr in _CANDIDATES:
        full = os.path.join(path, filename)
        if not os.path.isfile(full):
            continue
        with open(full, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if must_contain is not None and must_contain not in text:
            continue
        if f"\n{attr} =" in "\n" + text or f"\n{attr}:" in "\n" + text \
                or f"def {attr}(" in text or f"async def {attr}(" in text:
            return {"app": f"{filename[:-3]}:{attr}"}
    return None


_FRAMEWORK_FILES = ("main.py", "app.py", "asgi.py")
_FRAMEWORK_ATTRS = ("app", "application")
_FRAMEWORK_FACTORIES = ("create_app",)


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
    for filename in _FRAMEWORK_FILES:
        full = os.path.join(path, filename)
        if not os.path.isfile(full):
            continue
        with open(full, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if not imports.search(text):
            continue
        for attr in _FRAMEWORK_ATTRS:
            if re.search(rf"^(?:{attr}[ \t]*[:=]|(?:async[ \t]+)?def[ \t]+{attr}[ \t]*\()",
                         text, re.M):
                return {"app": f"{filename[:-3]}:{attr}"}
        for factory in _FRAMEWORK_FACTORIES:
            if re.search(rf"^(?:async[ \t]+)?def[ \t]+{factory}[ \t]*\(", text, re.M):
                return {"app": f"{filename[:-3]}:{factory}()"}
    return None



async def accept_lifespan(receive, send) -> None:
    """Answer an ASGI lifespan scope for an app that has nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def import_app(spec: str) -> Callable:
    """Import ``"module:attr"`` or call ``"module:factory()"``.

    Like uvicorn's importer, an ImportError raised *inside* the user's module
    is re-raised as is (its own traceback), while a missing module or
    attribute becomes a :class:`CapabilityError` that says what was looked for.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CapabilityError(f"app {spec!r} must look like 'module:attr' or 'module:factory()'")
    factory = attr.endswith("()")
    if factory:
        attr = attr[:-2]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise
        raise CapabilityError(
            f"module {module_name!r} not found (looked in {sys.path[0]!r})"
        ) from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CapabilityError(
                f"attribute {attr!r} not found in module {module_name!r}"
            ) from None
    if factory:
        obj = obj()
    if not callable(obj):
        raise CapabilityError(f"{spec!r} is not callable, so not an ASGI application",
                              code="WATT_APP_NOT_ASGI")
    return obj


def discover() -> dict[str, Capability]:
    """Installed capabilities by name, from the ``watt.capabilities`` entry points.

    The built-in ones (every module of the ``capabilities`` package with a
    ``capability``) are always there, even when Watt runs from a source tree
    without its distribution metadata.  A third-party entry point that fails
    to load is skipped with a warning on stderr, never fatal to the others.
    """
    import pkgutil
    from importlib.metadata import entry_points

    import capabilities

    found: dict[str, Capability] = {}
    for info in pkgutil.iter_modules(capabilities.__path__):
        module = importlib.import_module(f"capabilities.{info.name}")
        cap = getattr(module, "capability", None)
        if isinstance(cap, Capability):
            found[cap.name] = cap
    for ep in entry_points(group="watt.capabilities"):
        if ep.name in found:
            continue
        try:
            cap = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop Watt
            print(f"[watt] capability {ep.name!r} ({ep.value}) failed to load: {exc}",
                  file=sys.stderr)
            continue
        if isinstance(cap, Capability):
            found[ep.name] = cap
    return found
