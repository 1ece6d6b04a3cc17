"""What a worker counts about the requests it serves and the mesh calls it makes.

Plain Python counters (standard library only: this runs in subinterpreters),
updated on the worker's own loop, off the main interpreter's hot path.  The
main side asks for a snapshot with a METRICS frame when ``/metrics`` is
scraped and turns it into Prometheus families labelled with the application
and worker (``watt/observability/metrics.py``).  An application's own
``prometheus_client`` metrics travel in the same snapshot, as text.
"""

from __future__ import annotations

import bisect
import gc
import os
import sys
import time
from collections import deque

#: Histogram buckets, in seconds (prometheus_client's defaults).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
QUANTILES = (0.01, 0.05, 0.5, 0.9, 0.95, 0.99, 0.999)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                      "PATCH"})
_WINDOW = 1024  # recent durations the summary's quantiles are computed over


class _Histogram:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last: +Inf

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def dump(self) -> list:
        return [self.count, self.total, self.buckets]


def method_label(method: str) -> str:
    """Known HTTP methods as they are; anything else is ``_OTHER`` (bounded labels)."""
    return method if method in _METHODS else "_OTHER"


class WorkerMetrics:
    def __init__(self, selector=None, own_process: bool = False) -> None:
        self.in_flight = 0
        self.requests: dict[tuple[str, int], _Histogram] = {}
        self.mesh: dict[tuple[str, str, int], _Histogram] = {}
        self.client: dict[tuple[str, str, int], _Histogram] = {}  # every outgoing call, by host
        self.recent: deque[float] = deque(maxlen=_WINDOW)
        self._selector = selector
        self._own_process = own_process
        self._thread_cpu = 0.0
        self._last_wall = time.perf_counter_ns()
        self._last_idle = selector.idle_ns if selector is not None else 0

    def request_done(self, method: str, status: int, seconds: float) -> None:
        key = (method_label(method), status)
        hist = self.requests.get(key)
        if hist is None:
            hist = self.requests[key] = _Histogram()
        hist.observe(seconds)
        self.recent.append(seconds)

    def mesh_done(self, target: str, method: str, status: int, seconds: float) -> None:
        """``status`` 0: the call failed without a response (timeout, no worker)."""
        _observe(self.mesh, (target, method_label(method), status), seconds)

    def client_done(self, host: str, method: str, status: int, seconds: float) -> None:
        """Any outgoing call, mesh or external, by target host; ``status`` 0: no response."""
        _observe(self.client, (host, method_label(method), status), seconds)

    def _elu(self) -> float | None:
        """Event-loop utilization since the previous snapshot."""
        if self._selector is None:
            return None
        wall, idle = time.perf_counter_ns(), self._selector.idle_ns
        elapsed = max(wall - self._last_wall, 1)
        elu = 1.0 - (idle - self._last_idle) / elapsed
        self._last_wall, self._last_idle = wall, idle
        return max(0.0, min(1.0, elu))

    def snapshot(self) -> dict:
        """Everything counted so far, as JSON-ready builtins."""
        recent = sorted(self.recent)
        quantiles = ([recent[min(len(recent) - 1, int(q * len(recent)))] for q in QUANTILES]
                     if recent else [])
        return {
            "requests": [[m, s, *h.dump()] for (m, s), h in self.requests.items()],
            "mesh": [[t, m, s, *h.dump()] for (t, m, s), h in self.mesh.items()],
            "client": [[t, m, s, *h.dump()] for (t, m, s), h in self.client.items()],
            "inFlight": self.in_flight,
            "quantiles": quantiles,
            "elu": self._elu(),
            # A process worker: its whole CPU time; a subinterpreter: its loop
            # thread's (threads it starts are counted in the runtime process).
            "cpu": time.process_time() if self._own_process else time.thread_time(),
            "memory": resident_memory() if self._own_process else None,
            "gc": [[s["collections"], s["collected"], s["uncollectable"]]
                   for s in gc.get_stats()],
            "custom": _custom_metrics(),
        }


def _observe(table: dict, key: tuple, seconds: float) -> None:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = _Histogram()
    hist.observe(seconds)


def resident_memory() -> int | None:
    """This process's resident memory in bytes (``/proc/self/statm``), None if unknown.
    Only a process worker's own: a subinterpreter shares the runtime's."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _custom_metrics() -> str | None:
    """The application's own prometheus_client metrics, when it uses that library
    (its registry lives in this interpreter), in the text exposition format."""
    client = sys.modules.get("prometheus_client")
    if client is None:
        return None
    try:
        return client.generate_latest(client.REGISTRY).decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - a broken custom collector must not stop ours
        print(f"[watt] the application's prometheus_client metrics failed: {exc}",
              file=sys.stderr)
        return None
