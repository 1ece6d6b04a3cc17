"""The watt engine's direct mode: accept here, serve in the entrypoint's workers.

Forwarding costs the main loop a REQUEST frame, a queue, two wake-ups and the
socket I/O of every request, so one loop caps the whole runtime (benchmarks/
README.md).  When nothing per request needs the main interpreter (see
:func:`direct_refusal`), the engine only accepts: each new connection goes,
as a file descriptor in a ``CONN`` frame, to the subinterpreter worker of the
entrypoint application with the fewest connections, which parses and answers
it on its own loop and core (:mod:`watt.worker.direct`).  A connection the
worker's fast path does not take (an upgrade, a streamed body, HTTP/1.0,
anything malformed) comes back in a ``HANDOFF`` frame and the engine serves it
here, as in forwarding mode.  With no subinterpreter worker ready (all
restarting, or process workers), connections are served here as well.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from loguru import logger

from .channel import protocol as p

if TYPE_CHECKING:
    from .http1 import H1Engine


def direct_refusal(config, engine_name: str, edge) -> str | None:
    """Why the entrypoint cannot be served in its workers, or None when it can."""
    server = config.server
    if not server.direct:
        return "server.direct is false"
    if engine_name != "watt":
        return f"server.engine is {engine_name!r} (direct serving is the watt engine's)"
    if server.tls is not None:
        return "server.tls terminates TLS in the main interpreter"
    if edge is not None and edge.pipeline is not None and any(
            not isinstance(stage, _worker_stage_classes()) for stage in edge.pipeline.stages):
        return "an edge stage that needs the main interpreter (rate limit, auth, validation) " \
               "is on"
    if edge is not None and edge.pipeline is not None and worker_stages(config) is None:
        return "applications[].cors sets a CORS policy per application"
    if config.limits.max_concurrency:
        return "limits.maxConcurrency counts requests across workers in the main interpreter"
    cache = config.config.http_cache
    if cache is not None and (cache.entrypoint or config.entrypoint in (cache.applications or ())):
        return "the entrypoint's answers are cached (httpCache) in the main interpreter"
    return None


def _worker_stage_classes() -> tuple:
    """Stages whose work is per request and holds no state: a worker can run them."""
    from .edge.cors import Cors
    from .edge.security import SecurityHeaders

    return (SecurityHeaders, Cors)


def worker_stages(config) -> dict | None:
    """The edge stages an entrypoint worker runs itself, as plain settings (the worker
    builds the same stage classes from them): ``server.securityHeaders`` and a
    ``server.cors`` that no application overrides. None: a per-application CORS
    policy (chosen by the gateway's routes) keeps requests forwarded."""
    server = config.server
    if any(app.cors is not None for app in config.applications):
        return None
    out: dict = {}
    headers = server.security_headers
    if headers is not False:
        if headers is True:
            from .config_edge import SecurityHeadersConfig

            headers = SecurityHeadersConfig()
        out["security-headers"] = _plain(headers)
    if server.cors is not None:
        out["cors"] = _plain(server.cors)
    return out


def _plain(section) -> dict:
    return {name: getattr(section, name) for name in section.__struct_fields__}


def direct_spec(config) -> dict:
    """What an entrypoint worker needs to serve connections itself (its spec's
    ``direct``): the request limits and the header rules of :class:`~watt.edge.proxy.Edge`."""
    limits = config.limits
    server = config.server
    return {
        "limits": {"max_header_size": limits.max_header_size,
                   "max_header_count": limits.max_header_count,
                   "max_body_size": limits.max_body_size,
                   "request_timeout": limits.request_timeout,
                   "header_timeout": limits.header_timeout,
                   "keep_alive_timeout": limits.keep_alive_timeout},
        "user_header": server.user_header,
        "trusted": list(server.trusted_proxies or ()),
        "stages": worker_stages(config) or {},
    }


class DirectAccept:
    """Accept on the entrypoint's socket and hand each connection to a worker."""

    def __init__(self, engine: H1Engine) -> None:
        self.engine = engine
        self.handed: dict[object, int] = {}  # worker -> its open direct connections
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn = 0

    def start(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._accept)

    def stop_accepting(self) -> None:
        if self.sock is not None:
            self._accept()  # what the kernel has queued is served, not reset
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    @property
    def active(self) -> int:
        """Open connections served in workers (for /metrics and the drain)."""
        return sum(n for worker, n in self.handed.items() if worker.channel is not None
                   and not worker.channel.lost)

    def _accept(self) -> None:
        sock = self.sock
        for _ in range(128):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of fds or memory: pause, as asyncio's servers do
                logger.warning(f"entrypoint: accept failed, retrying in 1 s: {exc}")
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(1.0, self._resume)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._dispatch(conn)

    def _resume(self) -> None:
        if self.sock is not None:
            self._loop.add_reader(self.sock.fileno(), self._accept)

    def _pick(self):
        engine = self.engine
        pool = engine.app.router.pools.get(engine.app.app_id)
        if pool is None:
            return None
        # The fewest open connections; among equals, the next in turn (short-lived
        # connections would otherwise all go to the first worker).
        workers = pool.workers
        count = len(workers)
        self._turn += 1
        best = None
        fewest = 0
        for i in range(count):
            worker = workers[(self._turn + i) % count]
            if worker.kind != "subinterpreter" or not _ready(worker):
                continue
            n = self.handed.get(worker, 0)
            if best is None or n < fewest:
                best, fewest = worker, n
        return best

    def _dispatch(self, conn: socket.socket, data: bytes = b"") -> None:
        worker = None if self.sock is None else self._pick()
        if worker is None:  # none ready, or the engine stops: serve it here
            self.engine.adopt(conn, data)
            return
        channel = worker.channel
        if channel.on_unsent_conn is None:
            channel.on_unsent_conn = self._reclaim
        self.handed[worker] = self.handed.get(worker, 0) + 1
        channel.send((p.CONN, 0, conn.detach(), data))
        if self.engine.closing:
            channel.send((p.CONN_RETIRE, 0, 0))

    def _reclaim(self, frame: tuple) -> None:
        """A CONN frame its worker exited without taking: to another worker."""
        self._take_back(frame[2], frame[3], True)

    def _take_back(self, fd: int, data: bytes, redispatch: bool) -> None:
        try:
            conn = socket.socket(fileno=fd)
        except OSError:
            return
        conn.setblocking(False)
        if redispatch:
            # After the worker's exit is handled (this may run while it is), so that
            # it is no longer picked.
            self._loop.call_soon(self._dispatch, conn, data)
        else:
            self.engine.adopt(conn, data)

    def on_frame(self, worker, frame: tuple) -> None:
        """CONN_CLOSED and HANDOFF from a worker."""
        if frame[0] == p.CONN_CLOSED:
            self._forget(worker, frame[2])
        elif frame[0] == p.HANDOFF:
            self._forget(worker, 1)
            self._take_back(frame[2], frame[3], frame[4])

    def _forget(self, worker, n: int) -> None:
        """``n`` of ``worker``'s connections are no longer its own."""
        left = self.handed.get(worker, 0) - n
        if left > 0:
            self.handed[worker] = left
        else:
            self.handed.pop(worker, None)

    def retire(self, mode: int) -> None:
        """Tell every worker with connections: 0 drain, 1 stop, 2 abort (CONN_RETIRE)."""
        for worker in list(self.handed):
            channel = worker.channel
            if channel is None or channel.lost:
                self.handed.pop(worker, None)
                continue
            channel.send((p.CONN_RETIRE, 0, mode))


def _ready(worker) -> bool:
    from .pool import _is_ready

    return _is_ready(worker)
