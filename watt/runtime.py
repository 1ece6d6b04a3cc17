"""The runtime manager: starts applications, owns their worker pools, stops them.

One :class:`Runtime` per process.  It loads the config, resolves each
application's capability, starts its workers (subinterpreters, or processes
where ``isolation`` asks or ``auto`` has to fall back), connects them to the
:class:`~watt.router.Router`, and serves the entrypoint application through
one HTTP engine.  Routing lives in ``router.py``, HTTP in ``entrypoint.py``,
worker life in ``isolation/``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from loguru import logger

from . import prefetch
from .capability import Capability, discover
from .channel.message import Response
from .config import ApplicationConfig, Config, LoadedConfig, load_config
from .config_dashboard import dashboard_settings, dashboard_telemetry
from .edge.info import make_edge
from .edge.tls import resolve as resolve_tls
from .entrypoint import Forwarder, HypercornEngine, create_engine, forward
from .errors import ConfigError, WattError
from .isolation import WorkerHandle
from .observability.logging import configure_logging, hub
from .observability.metrics import MetricsApp, MetricsCollector, push_loop
from .observability.metrics_otlp import check_available, otlp_push_loop
from .observability.tracing import SpanSink
from .pool import AppPool
from .router import Router


class InjectResponse(Response):
    """What :meth:`Runtime.inject` returns: ``status``, ``headers``, ``body``,
    ``text``, ``json()``, ``header(name)``."""

    __slots__ = ()


class Runtime:
    """Runs the applications of one config.  ``async with Runtime(cfg) as rt: rt.url``."""

    def __init__(self, config: str | os.PathLike | dict | Config, *, hostname: str | None = None,
                 port: int | None = None, engine: str | None = None,
                 start_timeout: float = 60.0, graceful_timeout: float | None = None,
                 management: bool = True, workers: int | None = None,
                 log_level: str | None = None, pretty: bool | None = None,
                 prepare: Callable[[LoadedConfig], None] | None = None) -> None:
        self._source = config
        self._prepare = prepare  # sees the loaded config first (watt dev --debug)
        self._hostname = hostname
        self._port = port
        self._engine_name = engine
        self.start_timeout = start_timeout
        self.graceful_timeout = graceful_timeout
        self.config: LoadedConfig | None = None
        self.router = Router()
        self.pools: dict[str, AppPool] = {}
        self.url: str | None = None
        self._engine = None
        self._state = "new"
        self._started_at: float | None = None
        self._management_enabled = management
        self._workers = workers  # overrides every application's worker count
        self.management = None  # watt/management.py's server, once started
        self._health_task: asyncio.Task | None = None
        self._probes = None
        self.metrics_url: str | None = None  # /metrics, /ready, /live (config `metrics`)
        self._log_level = log_level  # overrides logger.level (watt start --log-level)
        self._pretty = pretty  # overrides logger.pretty (watt dev)
        self.logs = hub  # every log line of this process: recent ones, followers
        self.metrics = MetricsCollector(self)
        self.tracing: SpanSink | None = None  # when `telemetry` is configured
        self._push_task: asyncio.Task | None = None
        self._otlp_task: asyncio.Task | None = None
        self.cache = None  # watt.cache.tap.HttpCache when httpCache is enabled

    # -- life cycle -----------------------------------------------------------------
    async def start(self) -> str:
        if self._state != "new":
            raise WattError(f"runtime already {self._state}", code="WATT_RUNTIME_STATE")
        self._state = "starting"
        source = self._source
        if isinstance(source, os.PathLike):
            source = str(source)
        self.config = load_config(source)
        if self._workers is not None:
            self.config.applications = [msgspec.structs.replace(app, workers=self._workers)
                                        for app in self.config.applications]
        if self._prepare is not None:
            self._prepare(self.config)
        if self.graceful_timeout is None:  # gracefulShutdown.application, in seconds
            self.graceful_timeout = self.config.graceful_shutdown.application / 1000
        configure_logging(self._log_level, pretty=self._pretty, config=self.config.logger)
        self.metrics.labels = dict(self.config.metrics.labels)
        self.metrics.interval = self.config.metrics.collection_interval / 1000
        self.metrics.sources = [self._connection_families, self._telemetry_families]
        # A dashboard without `telemetry` still records spans, for its traces view only
        # (none without the management API it serves: Runtime(management=False)).
        dashboard = dashboard_settings(self.config) if self._management_enabled else None
        telemetry = self.config.telemetry = dashboard_telemetry(dashboard,
                                                                self.config.telemetry)
        if telemetry is not None and telemetry.enabled:
            self.tracing = SpanSink(telemetry)
        self._start_cache()
        if self.config.metrics.otlp is not None:
            check_available()
        try:
            capabilities = discover()  # once: each call reads every distribution's metadata
            pools = [self._make_pool(app, capabilities) for app in self.config.applications]
            entry = self.config.entrypoint
            services = [pool for pool in pools if pool.id != entry]
            prefetching = prefetch.start(prefetch.modules_after_workers(
                self.config, self._engine_name, self._management_wanted()))
            await self._start_pools(services)
            await self._start_pools([pool for pool in pools if pool.id == entry])
            await prefetch.finish(prefetching)
            server = self.config.server
            host = self._hostname or server.hostname
            port = server.port if self._port is None else self._port
            # The engine drains requests to the entrypoint application: as long as
            # that application's own drain may take.
            entry_drain = self.pools[entry].app.graceful_shutdown
            edge = make_edge(self.config, self)
            self._engine = create_engine(self._engine_name or server.engine,
                                         Forwarder(self.router, entry, self.config.limits, edge,
                                                   resolve_tls(server.tls, self.config.base_dir)),
                                         host, port,
                                         self.graceful_timeout if entry_drain is None
                                         else entry_drain / 1000)
            self._direct_mode(edge)
            self.url = await self._engine.start()
        except BaseException:
            await self._stop_pools()
            self._state = "stopped"
            raise
        self._state = "running"
        self._started_at = time.monotonic()
        probes = self.config.metrics
        if probes.enabled:
            app = MetricsApp(self, self.metrics, probes.endpoint, probes.auth)
            self._probes = HypercornEngine(app, probes.hostname, probes.port)
            self.metrics_url = await self._probes.start()
            logger.info(f"{probes.endpoint}, /ready and /live at {self.metrics_url}")
        if probes.push is not None:
            self._push_task = asyncio.get_running_loop().create_task(push_loop(
                self.metrics, probes.push.url, probes.push.job, probes.push.interval / 1000))
        if probes.otlp is not None:
            self._otlp_task = asyncio.get_running_loop().create_task(otlp_push_loop(
                self.metrics, probes.otlp.endpoint, probes.otlp.headers,
                probes.otlp.interval / 1000, probes.otlp.service_name))
        if self.config.health.enabled:
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop())
        management = self.config.management_api
        if self._management_wanted():
            from .management import ManagementServer

            self.management = ManagementServer(
                self, tcp=None if isinstance(management, bool) else management)
            await self.management.start()
        if dashboard is not None:
            from .management.dashboard import start_configured

            await start_configured(self, dashboard)
        mode = ", served in its workers" if getattr(self._engine, "direct", None) else ""
        logger.info(f"entrypoint {entry!r} listening at {self.url} ({self._engine.name}{mode})")
        return self.url

    def _direct_mode(self, edge) -> None:
        """Serve the entrypoint's connections in its workers when nothing per request
        needs the main interpreter (watt/http1_direct.py); say which mode and why."""
        from .http1_direct import DirectAccept, direct_refusal

        engine = self._engine
        refusal = direct_refusal(self.config, engine.name, edge)
        pool = self.pools[self.config.entrypoint]
        if refusal is None and pool.isolation == "process":
            refusal = "the entrypoint application runs in process workers"
        if refusal is None:
            engine.direct = DirectAccept(engine)
            logger.debug("entrypoint: connections are served in the entrypoint's workers")
        elif self.config.server.direct and engine.name == "watt":
            logger.debug(f"entrypoint: requests are forwarded through the main interpreter: "
                         f"{refusal}")

    def _management_wanted(self) -> bool:
        management = self.config.management_api
        return self._management_enabled and (management is True or (
            not isinstance(management, bool) and management.enabled))

    async def _start_pools(self, pools: list[AppPool]) -> None:
        for pool in pools:
            self.pools[pool.id] = pool
            self.router.add(pool.id, pool)
        results = await asyncio.gather(*(self._start_pool(pool) for pool in pools),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _start_pool(self, pool: AppPool) -> None:
        try:
            await pool.start()
        except WattError as exc:
            exc.file = exc.file or (self.config.file if self.config else None)
            exc.line = exc.line or _line_of_app(exc.file, pool.id)
            raise
        logger.bind(app=pool.id).info(
            f"application {pool.id!r} ready: {len(pool.workers)} {pool.isolation} worker(s)")

    def _connection_families(self) -> list:
        """Read at scrape time: the watt engine's open connections, or the requests and
        WebSockets in progress that the Forwarder counts for an ASGI engine."""
        from .observability.metrics_families import connection_families

        engine = self._engine
        if engine is None:
            return []
        return connection_families(engine.name, engine.active if hasattr(engine, "connections")
                                   else engine.app.active)

    def _telemetry_families(self) -> list:
        """Read at scrape time: log lines and spans the transports dropped or failed."""
        from .observability.metrics_families import span_families, transport_families

        return transport_families(hub.transport_counts()) + span_families(self.tracing)

    def _make_pool(self, app: ApplicationConfig,
                   capabilities: dict[str, Capability] | None = None) -> AppPool:
        capability, options = resolve_capability(app, self.config, capabilities)
        return AppPool(app, capability, options, self)

    async def stop(self) -> None:
        """Stop taking connections, drain, then stop applications in reverse start order."""
        if self._state in ("stopped", "stopping"):
            return
        self._state = "stopping"
        for task in (self._health_task, self._push_task, self._otlp_task):
            if task is not None:
                task.cancel()
        if self.management is not None:
            await self.management.stop()
        limit = self.config.graceful_shutdown.runtime / 1000 if self.config else None
        try:
            async with asyncio.timeout(limit):
                try:
                    if self._engine is not None:
                        await self._drain_delay()
                        await self._engine.stop()
                finally:
                    await self._stop_pools()
        except TimeoutError:
            logger.warning(f"shutdown took longer than gracefulShutdown.runtime ({limit} s): "
                           "stopping what is left")
            for pool in self.pools.values():
                await pool.stop(0.0)
        finally:
            self.router.links.close_all()
            await self._stop_cache()
            self._state = "stopped"
            if self.tracing is not None:
                self.tracing.close()
            hub.close()  # log transports send what they still hold
            if self._probes is not None:  # /ready said 503 all through the drain
                await self._probes.stop()

    async def _drain_delay(self) -> None:
        """``deploy.drainDelay``: keep serving while /ready already says 503 (the state
        is "stopping"), so a load balancer that polls it stops sending before the
        listener closes and new connections are refused."""
        delay = self.config.config.deploy.drain_delay / 1000 if self.config else 0
        if delay > 0:
            retire = getattr(self._engine, "retire", None)  # connection: close from now on
            if retire is not None:
                retire()
            logger.info(f"draining: /ready answers 503, the listener closes in {delay:g} s")
            await asyncio.sleep(delay)

    def _start_cache(self) -> None:
        """``httpCache``: one store, tapped into every cached application's channels."""
        settings = self.config.config.http_cache
        if settings is None or not settings.enabled:
            return
        from . import cache
        from .cache.tap import HttpCache, cache_families

        self.cache = self.router.cache = HttpCache(settings, self.config.entrypoint)
        cache._local, cache._local_loop = self.cache, asyncio.get_running_loop()
        self.metrics.sources.append(lambda: cache_families(self.cache.snapshot()))

    async def _stop_cache(self) -> None:
        if self.cache is None:
            return
        from . import cache

        if cache._local is self.cache:
            cache._local = cache._local_loop = None
        await self.cache.close()

    async def _stop_pools(self) -> None:
        entry = self.config.entrypoint if self.config else None
        ordered = sorted(self.pools.values(), key=lambda pool: pool.id != entry)
        for pool in ordered:  # entrypoint first: it calls the others
            await pool.stop(self.graceful_timeout)

    async def _health_loop(self) -> None:
        interval = self.config.health.interval / 1000
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for pool in list(self.pools.values()):
                pool.check_health(now)

    def _worker_exited(self, worker: WorkerHandle) -> None:
        pool = self.pools.get(worker.app_id)
        if pool is not None and self._state == "running":
            pool.worker_died(worker)

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- use ------------------------------------------------------------------------------
    async def inject(self, app_id: str, method: str = "GET", path: str = "/", *,
                     headers: dict | list | None = None, body: bytes | str = b"") -> InjectResponse:
        """Send a request to ``app_id`` over its channel, without a socket (also while
        the runtime starts: the edge fetches OpenAPI documents of ready applications)."""
        if self._state not in ("running", "starting"):
            raise WattError("the runtime is not running", code="WATT_RUNTIME_STATE")
        if app_id not in self.pools:
            raise WattError(f"no application {app_id!r} (known: {', '.join(sorted(self.pools))})",
                            code="WATT_MESH_UNKNOWN_APP")
        if isinstance(body, str):
            body = body.encode()
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        raw = [(k.lower().encode("latin-1") if isinstance(k, str) else k.lower(),
                v.encode("latin-1") if isinstance(v, str) else v) for k, v in pairs]
        if not any(k == b"host" for k, _ in raw):
            raw.insert(0, (b"host", f"{app_id}.plt.local".encode()))
        if body and not any(k == b"content-length" for k, _ in raw):
            raw.append((b"content-length", str(len(body)).encode()))
        path_part, _, query = path.partition("?")
        scope = {"type": "http", "http_version": "1.1", "method": method.upper(),
                 "scheme": "http", "path": path_part, "raw_path": path_part.encode(),
                 "query_string": query.encode(), "root_path": "", "headers": raw,
                 "client": ("127.0.0.1", 0), "server": (f"{app_id}.plt.local", 80)}
        def app(scope, receive, send):
            return forward(self.router, app_id, scope, receive, send)

        return InjectResponse(*await call_buffered(app, scope, body))

    async def restart(self, app_id: str | None = None) -> None:
        """Rolling restart of one application (or all): no request fails meanwhile."""
        if self._state != "running":
            raise WattError("the runtime is not running", code="WATT_RUNTIME_STATE")
        if app_id is not None and app_id not in self.pools:
            raise WattError(f"no application {app_id!r} (known: {', '.join(sorted(self.pools))})",
                            code="WATT_MESH_UNKNOWN_APP")
        for pool in [self.pools[app_id]] if app_id else list(self.pools.values()):
            await pool.restart(self.graceful_timeout)

    @property
    def state(self) -> str:
        """new, starting, running, stopping or stopped."""
        return self._state

    @property
    def entry_app(self):
        """The ASGI callable the HTTP engine serves: the entrypoint's forwarder, with
        its limits and routing.  ``watt.serverless`` feeds it without a socket."""
        if self._engine is None:
            raise WattError("the runtime is not running", code="WATT_RUNTIME_STATE")
        return self._engine.app

    def info(self) -> dict:
        """What ``watt ps`` shows: pid, folder, URL, uptime, applications."""
        return {"pid": os.getpid(), "cwd": os.getcwd(), "url": self.url,
                "state": self._state, "file": self.config.file if self.config else None,
                "entrypoint": self.config.entrypoint if self.config else None,
                "uptime": (time.monotonic() - self._started_at) if self._started_at else 0.0,
                "applications": sorted(self.pools)}

    def applications(self) -> list[dict]:
        return [pool.info() for pool in self.pools.values()]

    def spans(self) -> list[dict]:
        """Spans kept by the ``memory`` exporter of ``telemetry`` (oldest first)."""
        return self.tracing.spans() if self.tracing is not None else []


async def call_buffered(app, scope: dict, body: bytes) -> tuple[int, list, bytes]:
    """Call the ASGI ``app`` with one whole request body; return its whole response
    as ``(status, headers, body)`` (``inject``, ``watt.serverless``)."""
    sent = False
    start: dict = {}
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)


def resolve_capability(app: ApplicationConfig, config: LoadedConfig,
                       capabilities: dict[str, Capability] | None = None,
                       ) -> tuple[Capability, dict]:
    """The capability that runs ``app`` (its ``kind``, else detected) and its options;
    ``capabilities`` is :func:`~watt.capability.discover`'s answer when the caller has it."""
    if capabilities is None:
        capabilities = discover()
    where = {"app_id": app.id, "file": config.file, "line": _line_of_app(config.file, app.id)}
    if app.kind:
        capability = capabilities.get(app.kind)
        if capability is None:
            raise ConfigError(f"kind {app.kind!r} names no installed capability (installed: "
                              f"{', '.join(sorted(capabilities))})",
                              code="WATT_CAPABILITY_UNKNOWN", **where)
        options = capability.detect(app.path) or {}
    else:
        capability, options = None, {}
        for cap in sorted(capabilities.values(), key=lambda c: -c.priority):
            found = cap.detect(app.path)
            if found is not None:  # {} = detected, no options
                capability, options = cap, found
                break
        if capability is None:
            if not app.app:
                raise ConfigError(
                    f"cannot tell what kind of application {app.path} is: set `app` "
                    "(module:attr) or `kind`", code="WATT_CAPABILITY_UNDETECTED", **where)
            capability = capabilities["asgi"]
    if app.app:
        options = dict(options, app=app.app)
    for key, value in (("threads", app.threads), ("index", app.index), ("max_age", app.max_age),
                       ("command", app.command), ("startTimeout", app.start_timeout),
                       ("stopTimeout", app.stop_timeout), ("listen", app.listen)):
        if value is not None:  # capability options the config sets
            options = dict(options, **{key: value})
    if app.gateway is not None:  # as watt.gateway.json would say it (camelCase keys)
        options = dict(options, gateway=msgspec.to_builtins(app.gateway))
    return capability, dict(options, id=app.id)


def _line_of_app(file: str | None, app_id: str) -> int | None:
    """The line where ``app_id`` is declared in the config file, for error messages."""
    if not file or not os.path.isfile(file):
        return None
    text = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
    for needle in (f'"{app_id}"', f"'{app_id}'", f"= {app_id}"):
        for number, line in enumerate(text, 1):
            if needle in line and "id" in line:
                return number
    return None
