"""Prometheus metrics of every worker, one correct view: the runtime's ``/metrics``.

Each worker counts its own requests and mesh calls (``watt/worker/metrics.py``)
on its own loop.  When ``/metrics`` is scraped (or ``watt metrics`` asks),
:class:`MetricsCollector` sends every ready worker a METRICS frame, waits
briefly for the snapshots, and builds Prometheus families labelled with
``applicationId`` and ``workerId`` — so two workers of one application are
two label sets, never one overwriting the other, and ``sum by
(applicationId)`` is the application's total.  An application's own
``prometheus_client`` metrics arrive in the same snapshot and get the same
labels.  The runtime process adds its own (``process_*``, ``python_*``).

:class:`MetricsApp` is the server at ``metrics.hostname:metrics.port``
(off the entrypoint): ``/metrics`` (optionally behind basic auth), ``/ready``
and ``/live`` for load balancers and Kubernetes probes.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import itertools
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from loguru import logger

from ..capability import accept_lifespan
from ..channel.protocol import METRICS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

#: Built by ``metrics_families`` (prometheus_client), imported on first use.
_FAMILIES = ("families", "connection_families", "transport_families", "span_families",
             "as_json")


def __getattr__(name: str):
    if name in _FAMILIES:
        from . import metrics_families

        return getattr(metrics_families, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MetricsCollector:
    """Asks every worker for its metrics and builds the Prometheus view."""

    def __init__(self, runtime, labels: dict[str, str] | None = None,
                 timeout: float = 2.0) -> None:
        self.runtime = runtime
        self.labels = dict(labels or {})
        self.timeout = timeout
        self._tokens = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        #: ``metrics.collectionInterval`` in seconds: snapshots younger than this are
        #: served again instead of asking every worker (0: ask on every scrape).
        self.interval = 0.0
        self._last: tuple[float, list[dict]] | None = None
        #: Families of the main process itself (entrypoint connections, log transports),
        #: each read at scrape time.
        self.sources: list[Callable[[], list[Metric]]] = []

    def on_reply(self, frame: tuple) -> None:
        """A worker's ``(METRICS, 0, token, json)``."""
        future = self._waiting.pop(frame[2], None)
        if future is not None and not future.done():
            future.set_result(frame[3])

    async def gather(self) -> list[dict]:
        """One snapshot per ready worker that answered within the timeout (or the
        last ones, when they are younger than the collection interval)."""
        if self.interval > 0 and self._last is not None and \
                time.monotonic() - self._last[0] < self.interval:
            return self._last[1]
        snapshots = await self._ask_workers()
        if self.interval > 0:
            self._last = (time.monotonic(), snapshots)
        return snapshots

    async def _ask_workers(self) -> list[dict]:
        loop = asyncio.get_running_loop()
        asked = []
        for pool in list(self.runtime.pools.values()):
            for worker in list(pool.workers):
                channel = worker.channel
                if worker.status != "ready" or channel is None or channel.lost:
                    continue
                token = next(self._tokens)
                future = self._waiting[token] = loop.create_future()
                channel.send((METRICS, 0, token, None))
                asked.append((pool, worker, token, future))
        if asked:
            await asyncio.wait([f for *_, f in asked], timeout=self.timeout)
        snapshots = []
        for pool, worker, token, future in asked:
            self._waiting.pop(token, None)
            if not future.done():
                logger.bind(app=pool.id).warning(
                    f"worker {worker.name} sent no metrics within {self.timeout} s")
                future.cancel()
                continue
            try:
                data = json.loads(future.result())
            except ValueError:
                continue
            snapshots.append({"app": pool.id, "worker": worker.index,
                              "isolation": worker.kind, "data": data})
        return snapshots

    async def exposition(self) -> bytes:
        """Everything, in the Prometheus text format."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry(await self.gather()))

    def registry(self, snapshots: list[dict]) -> CollectorRegistry:
        from .metrics_families import registry

        return registry(snapshots, [pool.info() for pool in self.runtime.pools.values()],
                        list(self.sources), self.labels)


async def push_loop(collector: MetricsCollector, url: str, job: str, interval: float) -> None:
    """Push the metrics to a Pushgateway every ``interval`` seconds (``metrics.push``)."""
    from prometheus_client import push_to_gateway

    while True:
        await asyncio.sleep(interval)
        registry = collector.registry(await collector.gather())
        try:
            await asyncio.to_thread(push_to_gateway, url, job=job, registry=registry,
                                    timeout=10)
        except Exception as exc:  # noqa: BLE001 - the gateway's trouble is not ours to crash on
            logger.warning(f"pushing metrics to {url} failed: {exc}")


class MetricsApp:
    """``/metrics``, ``/ready`` and ``/live``: the runtime's own server, off the entrypoint."""

    def __init__(self, runtime, collector: MetricsCollector | None = None,
                 endpoint: str = "/metrics", auth=None) -> None:
        self.runtime = runtime
        self.collector = collector
        self.endpoint = endpoint
        self._auth = (b"Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode())
                      if auth is not None else None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        content_type = b"application/json"
        if scope["method"] not in ("GET", "HEAD"):
            status, body = 405, {"error": "only GET and HEAD"}
        elif path == "/ready":
            status, body = self.ready()
        elif path == "/live":
            status, body = self.live()
        elif path == self.endpoint and self.collector is not None:
            if self._auth is not None and not _authorized(scope, self._auth):
                await _answer(send, scope, 401, b'{"error": "unauthorized"}', content_type,
                              [(b"www-authenticate", b'Basic realm="watt metrics"')])
                return
            from prometheus_client.exposition import CONTENT_TYPE_LATEST

            status, body = 200, await self.collector.exposition()
            content_type = CONTENT_TYPE_LATEST.encode()
        else:
            paths = ["/ready", "/live"] + ([self.endpoint] if self.collector else [])
            status, body = 404, {"error": "not found", "paths": paths}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await _answer(send, scope, status, data, content_type)

    def ready(self) -> tuple[int, dict]:
        """Ready to take traffic: running, and each application has a ready worker."""
        apps = {app["id"]: sum(w["status"] == "ready" and w.get("serving", True)
                               for w in app["workers"])
                for app in self.runtime.applications()}
        waiting = sorted(app_id for app_id, ready in apps.items() if not ready)
        ok = self.runtime.state == "running" and not waiting
        return (200 if ok else 503), {"ready": ok, "state": self.runtime.state,
                                      "readyWorkers": apps, "notReady": waiting}

    def live(self) -> tuple[int, dict]:
        """Alive: the main loop answers and the runtime is not shutting down."""
        ok = self.runtime.state in ("starting", "running")
        return (200 if ok else 503), {"live": ok, "state": self.runtime.state}


def _authorized(scope: dict, expected: bytes) -> bool:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return hmac.compare_digest(value, expected)
    return False


async def _answer(send, scope: dict, status: int, data: bytes, content_type: bytes,
                  extra: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(data)).encode()),
                            (b"cache-control", b"no-store"), *(extra or [])]})
    await send({"type": "http.response.body",
                "body": b"" if scope["method"] == "HEAD" else data})
