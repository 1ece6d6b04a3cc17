"""``watt dev`` debugging: one debugpy session for every application, and ``breakpoint()``.

**debugpy** (``watt dev --debug [APP...]``): the ``watt dev`` process calls
``debugpy.listen`` (the adapter the IDE attaches to, on 127.0.0.1) and becomes
the root of the debug session.  debugpy cannot run inside a PEP 684 own-GIL
subinterpreter: on CPython 3.13.0 pydevd crashes the whole process there
(``free(): invalid pointer`` / a segfault, with sys.monitoring and with the
settrace tracer alike; tried here), so every application chosen for debugging
runs in *process* workers for the session, and each of those processes joins
the adapter with ``debugpy.connect`` as a child of the root session
(``watt/worker/debug.py``).  The IDE sees them as sub-processes of one session
(VS Code: ``"subProcess": true`` in the attach configuration).

**breakpoint()**: a worker's stdin is not the terminal, so ``watt dev`` serves a
unix socket (in a folder only this user can enter) and points every worker's
``breakpoint()`` at it (``PYTHONBREAKPOINT``); :class:`PdbBridge` joins each
pdb session to the terminal, one at a time, while the other workers serve.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile

import msgspec
from loguru import logger

from .errors import WattError
from .worker.debug import BREAKPOINT_SOCKET, DEBUGPY_ENDPOINT

__all__ = ["DebugSession", "PdbBridge"]


class DebugSession:
    """The debugpy adapter of one ``watt dev --debug`` run, and which applications it covers
    (``apps``: ids, or empty for all)."""

    def __init__(self, apps: list[str] | tuple[str, ...], port: int,
                 host: str = "127.0.0.1") -> None:
        self.apps, self.host, self.port = list(apps), host, port
        self.endpoint: str | None = None  # host:port:token:pid that workers connect to

    def listen(self) -> tuple[str, int]:
        """Start the adapter (blocking, about a second); returns where the IDE attaches."""
        try:
            import debugpy
        except ImportError:
            raise WattError("`watt dev --debug` needs debugpy: pip install 'watt[debug]'",
                            code="WATT_DEBUG_UNAVAILABLE") from None
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        debugpy.configure(subProcess=False)  # only the applications chosen join, by hand
        try:
            host, port = debugpy.listen((self.host, self.port))
        except (RuntimeError, OSError) as exc:
            raise WattError(f"the debug adapter cannot listen on {self.host}:{self.port}: "
                            f"{exc}; pick another --debug-port", code="WATT_DEBUG_LISTEN_FAILED"
                            ) from None
        setup = sys.modules["pydevd"].SetupHolder.setup  # the adapter's side for debuggees
        self.endpoint = f"{setup['client']}:{setup['port']}:{setup['access-token']}:{os.getpid()}"
        self.host, self.port = host, port
        return host, port

    def prepare(self, config) -> None:
        """Runtime hook, before any application starts: the chosen applications run in
        process workers that join the adapter."""
        ids = [app.id for app in config.applications]
        unknown = [name for name in self.apps if name not in ids]
        if unknown:
            raise WattError(f"--debug names {', '.join(map(repr, unknown))}, which "
                            f"{'is no application' if len(unknown) == 1 else 'are no applications'}"
                            f" (known: {', '.join(ids)})", code="WATT_DEBUG_UNKNOWN_APP")
        chosen = set(self.apps or ids)
        apps = []
        for app in config.applications:
            if app.id in chosen:
                if app.isolation != "process":
                    logger.bind(app=app.id).info(
                        f"application {app.id!r} runs in process workers for this debug "
                        "session: debugpy cannot trace inside a subinterpreter")
                app = msgspec.structs.replace(app, isolation="process", env={
                    **app.env, DEBUGPY_ENDPOINT: self.endpoint or ""})
            apps.append(app)
        config.applications = apps


class PdbBridge:
    """Serves the ``breakpoint()`` socket of ``watt dev`` and joins each pdb session to
    this process's terminal (stdin in, stdout out), one session at a time."""

    def __init__(self, stdin_fd: int | None = None, stdout=None) -> None:
        self.stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
        self.stdout = stdout or sys.stdout
        self.path: str | None = None
        self.sessions = 0
        self._folder: str | None = None
        self._server: asyncio.Server | None = None
        self._lock = asyncio.Lock()
        self._saved: dict[str, str | None] = {}

    async def start(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="watt-pdb-")  # 0700: only this user
        self.path = os.path.join(self._folder, "pdb.sock")
        self._server = await asyncio.start_unix_server(self._session, self.path)
        for name, value in ((BREAKPOINT_SOCKET, self.path),
                            ("PYTHONBREAKPOINT", "watt.worker.debug.set_trace")):
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value  # workers started from now on inherit it

    async def stop(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._server is not None:
            self._server.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._lock:
            header = (await reader.readline()).decode(errors="replace").split()
            app, pid = (header + ["?", "?"])[:2]
            self.sessions += 1
            self._write(f"\n[watt] breakpoint() in application {app!r} (pid {pid}): pdb below; "
                        "`c` continues that request (the other applications keep serving)\n")
            loop = asyncio.get_running_loop()

            def from_terminal() -> None:
                try:
                    data = os.read(self.stdin_fd, 4096)
                except OSError:
                    data = b""
                if data:
                    writer.write(data)
                else:  # end of input: pdb sees EOF and lets the request go on
                    loop.remove_reader(self.stdin_fd)
                    if writer.can_write_eof():
                        writer.write_eof()

            loop.add_reader(self.stdin_fd, from_terminal)
            try:
                while data := await reader.read(4096):
                    self._write(data.decode(errors="replace"))
            except ConnectionError:
                pass
            finally:
                loop.remove_reader(self.stdin_fd)
                writer.close()
            self._write(f"\n[watt] pdb session of {app!r} ended\n")

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()
