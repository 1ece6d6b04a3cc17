"""The workers of one application: start (with the isolation fallback), pick, restart,
scale between ``workers: {min, max}``, stop."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING

from loguru import logger

from .capability import Capability
from .channel.protocol import CACHE, CONN_CLOSED, HANDOFF, HEALTH, LOG, METRICS, SPANS, UNLINKED
from .config import ApplicationConfig
from .config_outbound import interceptors_spec, outbound_cache_spec
from .config_workers import WorkersConfig
from .errors import WattError
from .http1_direct import direct_spec
from .isolation import WorkerHandle, WorkerStartError, create_worker
from .isolation.base import READY
from .observability.tracing import worker_tracing
from .router import RoundRobin
from .supervision import HealthCheck, RestartPolicy, Scaler

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
        if self.isolation == "subinterpreter" and capability.isolation == "process":
            logger.bind(app=app.id).warning(
                f"application {app.id!r} forces isolation 'subinterpreter', but the "
                f"{capability.name} capability needs a process: it will likely fail to start")
        self.workers: list[WorkerHandle] = []
        self._rr = RoundRobin()
        restart = app.restart_on_error
        self.policy = RestartPolicy(runtime.config.restart_on_error if restart is None else restart)
        self.restarts = 0
        self.worker_restarts: dict[int, int] = {}  # per worker index (management API)
        self.start_duration: float | None = None  # seconds start() took (start-up table)
        self.in_flight = 0  # entrypoint requests being answered (limits.maxConcurrency)
        self._pending: set = set()  # restart timers and tasks, cancelled on stop
        self._draining: set[WorkerHandle] = set()  # scaled down, finishing their requests
        self._kind = "subinterpreter"
        workers = app.workers
        self.scaler: Scaler | None = None  # workers: {min, max}
        if isinstance(workers, WorkersConfig):
            self.scaler = Scaler(minimum=workers.minimum, maximum=workers.maximum,
                                 up_elu=workers.scale_up_elu, down_elu=workers.scale_down_elu,
                                 checks=workers.scale_checks)
        self.initial_workers = self.scaler.minimum if self.scaler else (workers or 1)
        self._busy = False  # a scale step or a rolling restart is under way
        #: called with the application's id when replaced workers are ready (rolling
        #: restart, `watt dev` reload, crash or health restart): the edge re-reads OpenAPI
        self.ready_hooks: list = []

    @property
    def id(self) -> str:
        return self.app.id

    def pick(self) -> WorkerHandle | None:
        return self._rr.pick(self.workers, _is_ready)

    def _spec(self, index: int) -> dict:
        health = self.runtime.config.health
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
            "health_interval": (health.interval / 1000) if health.enabled else None,
            "observe": self._observe_spec(),
            "max_concurrency": self.app.max_concurrency,
            "checks": {"ready": self.app.health.ready, "live": self.app.health.live},
            "interceptors": interceptors_spec(self.runtime.config.mesh.interceptors,
                                              self.app.interceptors),
            "http_cache": outbound_cache_spec(self.runtime.config.config.http_cache),
            "direct": direct_spec(self.runtime.config)
            if self.runtime.config.server.direct and self.id == self.runtime.config.entrypoint
            else None,
        }

    def _observe_spec(self) -> dict:
        """What the worker needs to build its log lines, metrics and spans."""
        config, runtime = self.runtime.config, self.runtime
        level = self.app.logger.level or runtime._log_level or config.logger.level
        return {"level": level.lower(), "access_log": config.logger.access_log,
                "redact": config.logger.redact_paths(), "censor": config.logger.censor(),
                "tracing": worker_tracing(config.telemetry, self.app.id)}

    async def _start_worker(self, index: int, kind: str) -> WorkerHandle:
        links = self.runtime.router.links
        worker = create_worker(kind, app_id=self.app.id, index=index, spec=self._spec(index),
                               on_exit=self.runtime._worker_exited, on_gone=links.worker_gone,
                               on_control=_control(self.runtime))
        health = self.runtime.config.health
        worker.health = HealthCheck(
            interval=health.interval / 1000, grace=health.grace_period / 1000,
            max_elu=health.max_elu, max_memory=health.max_memory,
            max_unhealthy=health.max_unhealthy_checks)
        await worker.start(timeout=self.runtime.start_timeout)
        self.runtime.router.attach(worker)
        links.worker_ready(worker)
        return worker

    async def start(self) -> None:
        began = time.monotonic()
        kind = "process" if self.isolation == "process" else "subinterpreter"
        if self.app.isolation == "auto" and self.capability.isolation == "process":
            logger.bind(app=self.id).info(
                f"application {self.id!r} runs in process workers: the {self.capability.name} "
                "capability cannot load in a subinterpreter (isolation: auto)")
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
        if self.initial_workers > 1:
            rest = await asyncio.gather(
                *(self._start_worker(i, kind) for i in range(1, self.initial_workers)),
                return_exceptions=True)
            errors = [r for r in rest if isinstance(r, BaseException)]
            self.workers.extend(r for r in rest if not isinstance(r, BaseException))
            if errors:
                raise errors[0]
        self.isolation = self._kind = kind
        self.start_duration = time.monotonic() - began

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
        await self._hand_over(old, new, 1.0)
        logger.bind(app=self.id).info(f"worker {new.name} restarted ({new.kind})")
        self._ready_again()

    async def _hand_over(self, old: WorkerHandle, new: WorkerHandle, timeout: float) -> None:
        """``new`` (ready) takes ``old``'s place; then ``old`` drains and stops."""
        if old in self.workers:
            self.workers[self.workers.index(old)] = new
        else:
            self.workers.append(new)
        self.restarts += 1
        self.worker_restarts[new.index] = self.worker_restarts.get(new.index, 0) + 1
        self.runtime.router.links.worker_stopping(old)
        await old.stop(timeout)  # a no-op for a worker already gone

    async def stop(self, timeout: float) -> None:
        if self.app.graceful_shutdown is not None:  # the application's own limit
            timeout = self.app.graceful_shutdown / 1000
        for pending in list(self._pending):  # no restart once stopping
            pending.cancel()
        self._pending.clear()
        for worker in self.workers:  # linked callers stop opening calls on them first
            self.runtime.router.links.worker_stopping(worker)
        await asyncio.gather(*(w.stop(timeout) for w in [*self.workers, *self._draining]),
                             return_exceptions=True)

    def check_health(self, now: float) -> None:
        """One round of health checks: replace each worker that failed too many; then,
        with ``workers: {min, max}``, maybe one worker more or less."""
        for worker in list(self.workers):
            if worker.status != READY or worker.health is None or worker.replacing:
                continue
            reason = worker.health.check(now, worker.ready_at or now)
            if reason is not None:
                worker.replacing = True
                logger.bind(app=self.id).warning(
                    f"worker {worker.name} is unhealthy ({reason}): replacing it")
                self._spawn(self.replace(worker))
        if self.scaler is not None:
            self._check_scale()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- dynamic workers ----------------------------------------------------------------
    def _check_scale(self) -> None:
        if self._busy or any(w.replacing or w.status != READY for w in self.workers):
            self.scaler.reset()  # measure again once the pool is settled
            return
        elus = [w.health.elu for w in self.workers
                if w.health is not None and w.health.last_report is not None]
        step = self.scaler.decide(elus, len(self.workers))
        if step:
            average = sum(elus) / len(elus)
            self._busy = True
            self._spawn(self.scale_up(average) if step > 0 else self.scale_down(average))

    async def scale_up(self, elu: float | None = None) -> None:
        """One more worker, started like the first ones; it takes requests once ready."""
        self._busy = True
        try:
            used = {w.index for w in self.workers}
            index = next(i for i in range(len(used) + 1) if i not in used)
            try:
                worker = await self._start_worker(index, self._kind)
            except WattError as exc:
                logger.bind(app=self.id).error(f"could not start one more worker: {exc}")
                return
            self.workers.append(worker)
            logger.bind(app=self.id).info(
                f"application {self.id!r} scaled up to {len(self.workers)} worker(s)"
                + (f" (event-loop utilization {elu:.2f})" if elu is not None else ""))
        finally:
            self._busy = False

    async def scale_down(self, elu: float | None = None) -> None:
        """One worker less: out of routing first, then it drains its in-flight requests
        (up to ``gracefulShutdown.application``) and stops."""
        self._busy = True
        try:
            candidates = [w for w in self.workers if not w.replacing]
            if len(self.workers) <= 1 or not candidates:
                return
            old = max(candidates, key=lambda w: w.index)
            self.workers.remove(old)  # no new request picks it from here on
            self.runtime.router.links.worker_stopping(old)
            logger.bind(app=self.id).info(
                f"application {self.id!r} scaled down to {len(self.workers)} worker(s)"
                + (f" (event-loop utilization {elu:.2f})" if elu is not None else ""))
            self._draining.add(old)
            try:  # a pool.stop meanwhile waits for it too
                await asyncio.shield(old.stop(self.runtime.graceful_timeout or 10.0))
            finally:
                self._draining.discard(old)
        finally:
            self._busy = False

    async def replace(self, old: WorkerHandle) -> None:
        """A new worker is ready before the old one stops taking requests."""
        try:
            new = await self._start_worker(old.index, self._kind)
        except WattError as exc:
            old.replacing = False
            logger.bind(app=self.id).error(f"could not replace {old.name}: {exc}")
            return
        # A blocked loop never drains: give it a short grace, then force it.
        await self._hand_over(old, new, 1.0)
        self._ready_again()

    async def restart(self, timeout: float) -> None:
        """Rolling restart: for each worker, a new one starts and is ready before the
        old one stops taking requests, so an application with several workers (or
        one, briefly with two) answers throughout."""
        self._busy = True
        try:
            for old in list(self.workers):
                new = await self._start_worker(old.index, self._kind)
                await self._hand_over(old, new, timeout)
        finally:
            self._busy = False
        logger.bind(app=self.id).info(f"application {self.id!r} restarted")
        self._ready_again()

    def _ready_again(self) -> None:
        """Replaced workers are ready: tell the ``ready_hooks``."""
        for hook in self.ready_hooks:
            try:
                hook(self.id)
            except Exception:
                logger.bind(app=self.id).exception("an application-ready hook failed")

    def info(self) -> dict:
        """Each worker's ``serving`` is false unless it is ready and its readiness check
        (if any) passes: requests go only to serving workers."""
        workers = [dict(w.info(), serving=_is_ready(w)) for w in self.workers]
        data = {"id": self.id, "kind": self.capability.name, "isolation": self.isolation,
                "restarts": self.restarts, "workers": workers}
        if self.scaler is not None:
            data["scaling"] = {"min": self.scaler.minimum, "max": self.scaler.maximum}
        return data


def _is_ready(worker: WorkerHandle) -> bool:
    """Ready to take requests: started, and its readiness check (if any) passes."""
    # A process worker's channel reports its death (EOF) a moment before its exit
    # status does: a request picked in between would fail on the dead worker.
    if worker.channel is not None and worker.channel.lost:
        return False
    return worker.status == READY and (worker.health is None or worker.health.serving)


def _control(runtime: Runtime):
    """Control frames a worker handle passes on: log lines, metrics, spans, link
    acknowledgements, health."""
    links, logs = runtime.router.links, runtime.logs

    def on_control(worker: WorkerHandle, frame: tuple) -> None:
        kind = frame[0]
        if kind == LOG:
            logs.write_many(frame[2], frame[3])
        elif kind == SPANS:
            if runtime.tracing is not None:
                runtime.tracing.receive(frame[2], frame[3], frame[4])
        elif kind == METRICS:
            runtime.metrics.on_reply(frame)
        elif kind == UNLINKED:
            links.unlinked(worker, frame[2])
        elif kind == HEALTH and worker.health is not None:
            worker.health.report(frame[2], frame[3], time.monotonic(), frame[4], frame[5])
        elif kind == CONN_CLOSED or kind == HANDOFF:  # direct connections (http1_direct)
            direct = getattr(runtime._engine, "direct", None)
            if direct is not None:
                direct.on_frame(worker, frame)
            elif kind == HANDOFF:
                os.close(frame[2])
        elif kind == CACHE:  # watt.cache in an application
            from .cache.tap import worker_frame

            worker_frame(runtime.cache, worker, frame)

    return on_control
