"""``watt dev``: restart an application's workers when a file in its folder changes.

The watcher runs on the runtime's own event loop (``watchfiles.awatch``,
inotify on Linux, no thread of ours).  A burst of changes (an editor's
save-rename-chmod, a ``git checkout``) arrives as one batch; each batch
restarts the applications that own a changed file, once each, and nothing
else: the other applications keep serving, their in-flight requests
untouched.

A restart is :meth:`Runtime.restart` — the rolling hand-over of
``watt/pool.py``: the new worker imports the new code and must be ready
before the old one stops.  When the new code does not import (a syntax
error, a missing module, a lifespan that fails), the new worker is dropped,
the user's own traceback is logged, and the old worker keeps serving the old
code until a later change imports cleanly.

The decisions (which files count, which application owns a file) are pure
functions, tested without a watcher.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Iterable, Mapping

from loguru import logger

from .errors import WattError

__all__ = ["IGNORED_DIRS", "Reloader", "is_ignored", "owners", "run_dev"]

#: Folders whose content never triggers a restart (caches, VCS, environments).
IGNORED_DIRS = frozenset({
    "__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", ".hypothesis", ".idea", ".vscode", "node_modules",
})
#: File endings that never trigger a restart: bytecode, editor swap and backup
#: files, and what a running application writes itself (databases, logs) —
#: restarting on those would restart it on every request.
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".swo", "~", ".tmp", ".log",
                    ".sqlite", ".sqlite3", ".db", "-journal", "-wal", "-shm")
_IGNORED_PREFIXES = (".#", "#")  # emacs lock and auto-save files


def is_ignored(path: str) -> bool:
    """True for a change that must not restart anything (see the constants above)."""
    parts = os.path.normpath(path).split(os.sep)
    if any(part in IGNORED_DIRS for part in parts[:-1]):
        return True
    name = parts[-1]
    return (name in IGNORED_DIRS or name.endswith(IGNORED_SUFFIXES)
            or name.startswith(_IGNORED_PREFIXES) or name == ".DS_Store")


def owners(changed: Iterable[str], folders: Mapping[str, str]) -> dict[str, list[str]]:
    """Which applications a batch of changed files restarts: ``{app id: [files]}``.

    ``folders`` maps each application id to its absolute folder.  A file
    belongs to the application with the deepest folder that contains it (an
    application nested in another's folder owns its own files); applications
    sharing one folder all own it.  Files outside every folder restart nothing.
    """
    found: dict[str, list[str]] = {}
    normalized = {app_id: os.path.normpath(folder) for app_id, folder in folders.items()}
    for path in sorted(set(changed)):
        path = os.path.normpath(path)
        best = -1
        apps: list[str] = []
        for app_id, folder in normalized.items():
            if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
                if len(folder) > best:
                    best, apps = len(folder), [app_id]
                elif len(folder) == best:
                    apps.append(app_id)
        for app_id in apps:
            found.setdefault(app_id, []).append(path)
    return found


def watch_roots(folders: Iterable[str]) -> list[str]:
    """The folders to watch: each distinct folder once, none inside another."""
    roots: list[str] = []
    for folder in sorted({os.path.normpath(f) for f in folders}, key=len):
        if not any(folder == r or folder.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            roots.append(folder)
    return roots


class Reloader:
    """Watches the folders of a running :class:`~watt.runtime.Runtime` and
    restarts the application that owns each change.

    ``debounce_ms``: how long a burst may keep growing before it is handled;
    ``step_ms``: the quiet time that ends a burst.  Restarts of one application
    never overlap: a change during a restart triggers one more restart after it.
    """

    def __init__(self, runtime, *, debounce_ms: int = 1600, step_ms: int = 100) -> None:
        self.runtime = runtime
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.folders = {pool.id: os.path.realpath(pool.app.path)
                        for pool in runtime.pools.values()}
        self._running: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self.reloads = 0  # successful restarts, for tests and logs

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Watch until cancelled (or ``stop_event`` is set)."""
        import watchfiles

        roots = watch_roots(self.folders.values())
        batches = watchfiles.awatch(
            *roots, watch_filter=lambda _change, path: not is_ignored(path),
            debounce=self.debounce_ms, step=self.step_ms, stop_event=stop_event)
        # awatch registers its inotify watches synchronously, before its first
        # await: one step of the first batch's task and changes are being
        # recorded, so "watching" is logged only once it is true.
        first = asyncio.ensure_future(anext(batches))
        try:
            await asyncio.sleep(0)
            logger.info(f"watching {len(roots)} folder(s) of {len(self.folders)} "
                        "application(s) for changes")
            try:
                changes = await first
            except StopAsyncIteration:
                return
            self.handle({path for _change, path in changes})
            async for changes in batches:
                self.handle({path for _change, path in changes})
        finally:
            for task in list(self._running.values()):
                task.cancel()
            if not first.done():
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
            await batches.aclose()

    def handle(self, changed: set[str]) -> None:
        """One batch of changed files: start (or queue) one restart per owner."""
        for app_id, files in owners(changed, self.folders).items():
            _forget_bytecode(files)
            present = [f for f in files if os.path.exists(f)] or files  # not editors' temp files
            shown = ", ".join(os.path.relpath(f, self.folders[app_id]) for f in present[:3])
            more = f" and {len(present) - 3} more" if len(present) > 3 else ""
            pool = self.runtime.pools.get(app_id)
            hook = pool.capability.needs_restart if pool is not None else None
            if hook is not None and not hook(present):
                logger.bind(app=app_id).info(
                    f"{shown}{more} changed: served as is ({pool.capability.name} "
                    "applications need no restart for it)")
                continue
            logger.bind(app=app_id).info(f"{shown}{more} changed: restarting {app_id!r}")
            if app_id in self._running:
                self._again.add(app_id)  # restart once more when the current one ends
                continue
            task = asyncio.get_running_loop().create_task(self._restart(app_id))
            self._running[app_id] = task

    async def _restart(self, app_id: str) -> None:
        log = logger.bind(app=app_id)
        try:
            while self.runtime.state == "running":  # not once it is shutting down
                self._again.discard(app_id)
                began = time.monotonic()
                try:
                    await self.runtime.restart(app_id)
                except WattError as exc:
                    # The user's own traceback (exc.detail) is part of str(exc).
                    log.error(f"{exc}\n{app_id!r} keeps serving its previous code; "
                              "fix the error and save to try again")
                except Exception:  # noqa: BLE001 - a bug of ours must not end the watcher
                    log.exception(f"restarting {app_id!r} failed")
                else:
                    self.reloads += 1
                    log.info(f"restarted {app_id!r} in {time.monotonic() - began:.2f} s")
                if app_id not in self._again:
                    return
        finally:
            self._running.pop(app_id, None)


def _forget_bytecode(files: list[str]) -> None:
    """Remove the cached bytecode of changed modules.

    A ``.pyc`` is checked against its source's mtime in whole seconds and its
    size: two saves in the same second with the same length (fix a typo,
    save, change it back) would otherwise import the stale bytecode.
    """
    for path in files:
        if not path.endswith(".py"):
            continue
        try:
            os.remove(importlib.util.cache_from_source(path))
        except (OSError, ValueError, NotImplementedError):
            pass


def run_dev(config, *, hostname: str | None = None, port: int | None = None,
            log_level: str | None = None, debug=None, **options) -> None:
    """``watt dev``: :func:`watt.main.run` plus a :class:`Reloader` on the same loop,
    with human-readable log lines (``logger.pretty``) even when output is piped.

    ``debug``: a :class:`watt.debug.DebugSession` (``--debug``), already listening.
    When stdin is a terminal, ``breakpoint()`` in an application opens pdb on it
    (:class:`watt.debug.PdbBridge`).
    """
    from .debug import PdbBridge
    from .main import _serve
    from .observability.logging import configure_logging

    configure_logging(log_level, pretty=True)
    options.setdefault("pretty", True)
    if debug is not None:
        debug_host, debug_port = debug.listen()
        print(f"Watt debug adapter (debugpy) listening on {debug_host}:{debug_port}: attach "
              "your IDE to it (docs/debugging.md)", flush=True)
        options["prepare"] = debug.prepare

    async def watch(runtime) -> None:
        try:
            await Reloader(runtime).run()
        except Exception:  # noqa: BLE001 - the runtime keeps serving without reload
            logger.exception("the file watcher stopped; changes are no longer "
                             "picked up (restart watt dev)")

    async def serve() -> None:
        bridge = PdbBridge() if sys.stdin is not None and sys.stdin.isatty() else None
        if bridge is not None:
            await bridge.start()
        try:
            await _serve(config, hostname=hostname, port=port, log_level=log_level,
                         on_running=watch, **options)
        finally:
            if bridge is not None:
                await bridge.stop()

    asyncio.run(serve())
