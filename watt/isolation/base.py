"""The one interface every worker kind implements, and the life cycle they share.

A worker is *starting* until it sends READY, *ready* while it takes
requests, *stopping* after STOP, then *stopped*; *dead* when it went away
on its own.  A start-up failure arrives as a FATAL frame and becomes a
:class:`WorkerStartError` carrying the application's own traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping

from loguru import logger

from ..channel import protocol as p
from ..channel.endpoint import Channel
from ..errors import ApplicationStartError

STARTING, READY, STOPPING, STOPPED, DEAD = "starting", "ready", "stopping", "stopped", "dead"


def worker_environment(app_env: Mapping[str, str]) -> dict[str, str]:
    """The environment a worker starts with: the runtime process's own, the
    application's ``env`` on top.  A process worker is spawned with exactly
    this; a subinterpreter's ``os.environ`` is a copy of the process's that
    ``worker/bootstrap.py`` updates with the same ``env``.  Each handle keeps
    the result as ``environment`` (what ``watt env`` shows)."""
    environ = dict(os.environ)
    environ.update(app_env)
    return environ


class WorkerStartError(ApplicationStartError):
    """A worker could not start; ``refused_module`` is set when a module refused
    to load in a subinterpreter (so ``isolation: auto`` can fall back)."""

    refused_module: str | None = None


class WorkerHandle:
    kind = "worker"

    def __init__(self, *, app_id: str, index: int, spec: dict,
                 on_exit: Callable[[WorkerHandle], None] | None = None,
                 on_gone: Callable[[WorkerHandle], None] | None = None,
                 on_control: Callable[[WorkerHandle, tuple], None] | None = None) -> None:
        self.app_id = app_id
        self.index = index
        self.spec = spec
        self.on_exit = on_exit  # died unexpectedly while serving
        self.on_gone = on_gone  # ended, whatever the reason
        self.on_other_control = on_control  # control frames the handle does not own
        self.status = STARTING
        self.channel: Channel | None = None
        self.pid: int | None = None
        self.interpreter_id: int | None = None
        self.ready_at: float | None = None
        self.health = None  # supervision.HealthCheck, set by the pool
        self.replacing = False
        self.environment: dict[str, str] | None = None  # set at launch: worker_environment()
        self._ready: asyncio.Future | None = None
        self._stopped: asyncio.Future | None = None
        self._exited: asyncio.Future | None = None

    @property
    def name(self) -> str:
        return f"{self.app_id}#{self.index}"

    # -- subclass hooks ---------------------------------------------------------
    async def _launch(self) -> Channel:
        raise NotImplementedError

    async def _cleanup(self) -> None:
        """Free the worker's resources after it exited."""

    def _describe_exit(self) -> str:
        return "exited"

    # -- life cycle ---------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._stopped = loop.create_future()
        self._exited = loop.create_future()
        self.channel = await self._launch()
        self.channel.on_control = self._on_control
        try:
            done, _ = await asyncio.wait({self._ready, self._exited}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if self._ready in done:
                self._ready.result()  # raises WorkerStartError on FATAL
            elif self._exited in done:
                raise WorkerStartError(f"worker {self.name} {self._describe_exit()} "
                                       "before it was ready", code="WATT_APP_START_FAILED",
                                       app_id=self.app_id)
            else:
                raise WorkerStartError(f"worker {self.name} was not ready within {timeout} s",
                                       code="WATT_APP_START_TIMEOUT", app_id=self.app_id)
        except BaseException:
            await self.stop(timeout=1.0)
            raise
        self.status = READY
        self.ready_at = time.monotonic()

    def _on_control(self, frame: tuple) -> None:
        kind = frame[0]
        if kind == p.READY:
            self.pid, self.interpreter_id = frame[2], frame[3]
            if not self._ready.done():
                self._ready.set_result(None)
        elif kind == p.FATAL:
            _, _, code, message, trace, refused = frame
            err = WorkerStartError(message, code=code, app_id=self.app_id, detail=trace or None)
            err.refused_module = refused
            if not self._ready.done():
                self._ready.set_exception(err)
            else:
                logger.bind(app=self.app_id).error(str(err))
        elif kind == p.STOPPED:
            if not self._stopped.done():
                self._stopped.set_result(None)
        elif self.on_other_control is not None:
            self.on_other_control(self, frame)

    def _mark_exited(self) -> None:
        """Called (on the loop) when the worker's thread or process has ended."""
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        unexpected = self.status == READY
        if self.channel is not None:
            self.channel.receive_pending()  # its last answers count
            self.channel.bounce_undelivered()
            self.channel.fail_all("WATT_WORKER_DIED", f"worker {self.name} {self._describe_exit()}")
        if self.status == READY:
            self.status = DEAD
            logger.bind(app=self.app_id).error(f"worker {self.name} {self._describe_exit()} "
                                               "unexpectedly")
        elif self.status == STOPPING:
            self.status = STOPPED
        if self.on_gone is not None:
            self.on_gone(self)
        if unexpected and self.on_exit is not None:
            self.on_exit(self)

    async def stop(self, timeout: float = 10.0) -> None:
        """Drain in-flight requests for up to ``timeout`` s, run lifespan shutdown, exit."""
        if self.status in (STOPPED, DEAD) and (self._exited is None or self._exited.done()):
            await self._cleanup()
            return
        self.status = STOPPING
        if self.channel is not None and not self.channel.lost:
            self.channel.send((p.STOP, 0, int(timeout * 1000)))
        if self._exited is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), timeout + 5.0)
            except TimeoutError:
                await self._force_stop()
        self.status = STOPPED
        await self._cleanup()

    async def _force_stop(self) -> None:
        print(f"[watt] worker {self.name} did not stop in time", file=sys.stderr)

    def info(self) -> dict:
        return {"app": self.app_id, "worker": self.index, "kind": self.kind,
                "status": self.status, "pid": self.pid, "interpreter": self.interpreter_id}
