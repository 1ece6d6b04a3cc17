"""The workers of one application: start (with the isolation fallback), pick, restart, stop."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING

from loguru import logger

from .capability import Capability
from .channel.protocol import UNLINKED
from .config import ApplicationConfig
from .errors import WattError
from .isolation import WorkerHandle, WorkerStartError, create_worker
from .isolation.base import READY
from .router import RoundRobin
from .supervision import RestartPolicy

if TYPE_CHECKING:
    from .runtime import Runtime


class AppPool:
    """The workers of one application, and the choice of isolation for them."""

    def __init__(self, app: ApplicationConfig, capability: Capability, options: dict,
                 runtime: Runtime) -> None:
        self.app = app
        self.capability = capability
        self.options = options
        self.runtime = runtime
        self.isolation = app.isolation if app.isolation != "auto" else capability.isolation
        self.workers: list[WorkerHandle] = []
        self._rr = RoundRobin()
        restart = app.restart_on_error
        self.policy = RestartPolicy(runtime.config.restart_on_error if restart is None else restart)
        self.restarts = 0
        self.in_flight = 0  # entrypoint requests being answered (limits.maxConcurrency)
        self._pending: set = set()  # restart timers and tasks, cancelled on stop
        self._kind = "subinterpreter"

    @property
    def id(self) -> str:
        return self.app.id

    def pick(self) -> WorkerHandle | None:
        return self._rr.pick(self.workers, _is_ready)

    def _spec(self, index: int) -> dict:
        return {
            "app_id": self.app.id,
            "worker": index,
            "path": self.app.path,
            "sys_path": [entry or os.getcwd() for entry in sys.path],
            "env": dict(self.app.env),
            "loader": self.capability.loader,
            "options": self.options,
            "mesh_timeout": self.runtime.config.mesh.timeout,
            # Experimental, off by default: poll queues briefly before sleeping
            # (watt/worker/spin.py); benchmarks/mesh.py measures it.
            "spin": os.environ.get("WATT_SPIN") == "1",
        }

    async def _start_worker(self, index: int, kind: str) -> WorkerHandle:
        links = self.runtime.router.links
        worker = create_worker(kind, app_id=self.app.id, index=index, spec=self._spec(index),
                               on_exit=self.runtime._worker_exited, on_gone=links.worker_gone,
                               on_control=_link_control(links))
        await worker.start(timeout=self.runtime.start_timeout)
        self.runtime.router.attach(worker)
        links.worker_ready(worker)
        return worker

    async def start(self) -> None:
        kind = "process" if self.isolation == "process" else "subinterpreter"
        try:
            first = await self._start_worker(0, kind)
        except WorkerStartError as exc:
            if self.isolation != "auto" or not exc.refused_module:
                raise
            logger.bind(app=self.id).info(
                f"application {self.id!r} imports {exc.refused_module}, which cannot load in a "
                "subinterpreter: running its workers as processes (isolation: auto)")
            self.isolation = "process"
            kind = "process"
            first = await self._start_worker(0, kind)
        self.workers.append(first)
        if self.app.workers > 1:
            rest = await asyncio.gather(
                *(self._start_worker(i, kind) for i in range(1, self.app.workers)),
                return_exceptions=True)
            errors = [r for r in rest if isinstance(r, BaseException)]
            self.workers.extend(r for r in rest if not isinstance(r, BaseException))
            if errors:
                raise errors[0]
        self.isolation = self._kind = kind

    # -- restarts ---------------------------------------------------------------------
    def worker_died(self, worker: WorkerHandle) -> None:
        """A ready worker died: the others keep serving; restart it after a backoff."""
        uptime = time.monotonic() - (worker.ready_at or time.monotonic())
        delay = self.policy.delay_ms(worker.index, uptime)
        log = logger.bind(app=self.id)
        if delay is None:
            log.warning(f"worker {worker.name} is gone and restartOnError is false: "
                        f"{self.id!r} serves with {self.ready_count()} worker(s)")
            return
        log.warning(f"worker {worker.name} died; restarting it in {delay} ms")
        self._schedule(worker, delay)

    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.status == READY)

    def _schedule(self, old: WorkerHandle, delay_ms: int) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._pending.discard(timer)
            task = loop.create_task(self._restart(old))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        timer = loop.call_later(delay_ms / 1000, fire)
        self._pending.add(timer)

    async def _restart(self, old: WorkerHandle) -> None:
        await old.stop(timeout=1.0)  # frees its interpreter or process, fds, queues
        try:
            new = await self._start_worker(old.index, self._kind)
        except WattError as exc:
            delay = self.policy.failed_start(old.index)
            logger.bind(app=self.id).error(f"restarting {old.name} failed, next try in "
                                           f"{delay} ms: {exc}")
            self._schedule(old, delay)
            return
        if old in self.workers:
            self.workers[self.workers.index(old)] = new
        else:
            self.workers.append(new)
        self.restarts += 1
        logger.bind(app=self.id).info(f"worker {new.name} restarted ({new.kind})")

    async def stop(self, timeout: float) -> None:
        for pending in list(self._pending):  # no restart once stopping
            pending.cancel()
        self._pending.clear()
        for worker in self.workers:  # linked callers stop opening calls on them first
            self.runtime.router.links.worker_stopping(worker)
        await asyncio.gather(*(w.stop(timeout) for w in self.workers), return_exceptions=True)

    async def restart(self, timeout: float) -> None:
        """Rolling restart: for each worker, a new one starts and is ready before the
        old one stops taking requests, so an application with several workers (or
        one, briefly with two) answers throughout."""
        for old in list(self.workers):
            new = await self._start_worker(old.index, self._kind)
            self.workers[self.workers.index(old)] = new
            self.runtime.router.links.worker_stopping(old)
            await old.stop(timeout)
            self.restarts += 1
        logger.bind(app=self.id).info(f"application {self.id!r} restarted")

    def info(self) -> dict:
        return {"id": self.id, "kind": self.capability.name, "isolation": self.isolation,
                "restarts": self.restarts, "workers": [w.info() for w in self.workers]}


def _is_ready(worker: WorkerHandle) -> bool:
    return worker.status == READY


def _link_control(links):
    def on_control(worker: WorkerHandle, frame: tuple) -> None:
        if frame[0] == UNLINKED:
            links.unlinked(worker, frame[2])

    return on_control
