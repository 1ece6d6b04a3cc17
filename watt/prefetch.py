"""Import, while the workers start, the modules the runtime needs once they are ready.

Between launching the first worker and its READY frame the main interpreter
mostly waits: each worker boots in its own subinterpreter, with its own GIL,
on its own thread (about 0.1 s for a bare ASGI application, more with
several applications in dependency order).  What ``Runtime.start`` does after
that wait -- build the edge pipeline (its stage modules), create the HTTP
engine (``watt.http1`` with httptools and wsproto, or granian, or
hypercorn), start the management API -- used to import its modules then, on
the way to the first answered request.  :func:`start` imports them on a
thread during the wait instead; the runtime waits for it (:func:`finish`)
before the steps that use them.

An import that fails here is ignored: the same import fails again at its
usual place, which reports it as before (a missing engine is
WATT_ENGINE_UNAVAILABLE, not a prefetch error).
"""

from __future__ import annotations

import asyncio
import importlib

#: What ``create_engine`` (and the engine's ``start``) imports for each engine name.
ENGINE_MODULES = {
    "auto": ("watt.http1", "httptools", "wsproto"),
    "watt": ("watt.http1", "httptools", "wsproto"),
    "granian": ("watt.http1", "granian.constants", "granian.server.embed"),
    "hypercorn": ("watt.http1", "hypercorn.asyncio", "hypercorn.config"),
}


def modules_after_workers(config, engine: str | None, management: bool) -> list[str]:
    """The modules ``Runtime.start`` imports once the applications are ready (pure:
    from the loaded ``config``, the engine name it will use and whether it starts
    the management API)."""
    from .edge import BUILTIN

    names = list(BUILTIN)  # build_pipeline imports every stage module
    names += ENGINE_MODULES.get(engine or config.server.engine, ENGINE_MODULES["hypercorn"])
    if config.metrics.enabled:  # /metrics, /ready, /live are served by hypercorn
        names += ENGINE_MODULES["hypercorn"]
    if management:
        names.append("watt.management")
    return list(dict.fromkeys(names))


def _import_all(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - the usual import reports it, at its place
            continue


def start(names: list[str]) -> asyncio.Task:
    """Import ``names`` on the loop's default executor, once the workers started in
    the same loop iteration are launched (creating an interpreter needs the main
    GIL a while: the imports would slow it); await :func:`finish` on the returned
    task before the steps that use them."""
    async def run() -> None:
        await asyncio.sleep(0)  # after the first steps of the pools started with it
        await asyncio.get_running_loop().run_in_executor(None, _import_all, names)

    return asyncio.get_running_loop().create_task(run())


async def finish(task: asyncio.Task | None) -> None:
    """Wait until the prefetch is done (it never raises)."""
    if task is not None:
        await task
