"""A bounded queue drained in batches by a thread of its own.

Log transports that send over the network (syslog, the bulk API, custom
sinks) and span exporters (OTLP, Zipkin) all need the same thing: the main
loop — which every request crosses — hands an item over in O(1) and never
waits; a thread groups items into batches and sends them; when the
destination is slow or down and the queue is full, new items are dropped and
counted, never buffered without bound and never blocking.

Not a log, metric or trace concern itself, so those modules may all use it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class BatchWorker:
    """``offer(item)`` from any thread; ``send(batch)`` runs on the worker's thread.

    ``dropped`` counts items refused because the queue was full; ``failed``
    counts items whose ``send`` raised (``on_error`` is told, at most once per
    ``error_every`` seconds, so a dead destination does not flood the log)."""

    def __init__(self, name: str, send: Callable[[list], None], *, batch_size: int = 512,
                 delay: float = 1.0, max_queue: int = 2048,
                 on_error: Callable[[Exception], None] | None = None,
                 error_every: float = 60.0) -> None:
        self.name = name
        self._send = send
        self.batch_size = batch_size
        self.delay = delay
        self.max_queue = max_queue
        self._items: deque = deque()
        self._wake = threading.Event()
        self._closed = False
        self._on_error = on_error
        self._error_every = error_every
        self._last_error = float("-inf")
        self.dropped = 0
        self.failed = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name=f"watt-{name}", daemon=True)
        self._thread.start()

    def offer(self, item) -> bool:
        """Queue ``item``; False (and counted) when the queue is full.  Never blocks:
        a deque's ``append`` and ``len`` are atomic, no lock is taken."""
        items = self._items
        if len(items) >= self.max_queue or self._closed:
            self.dropped += 1
            return False
        items.append(item)
        if len(items) >= self.batch_size:
            self._wake.set()
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait(self.delay)
            self._wake.clear()
            self._drain()
            if self._closed:
                self._drain()
                return

    def _drain(self) -> None:
        items = self._items
        while items:
            batch = [items.popleft() for _ in range(min(self.batch_size, len(items)))]
            try:
                self._send(batch)
                self.sent += len(batch)
            except Exception as exc:  # noqa: BLE001 - the destination's trouble, not ours
                self.failed += len(batch)
                now = time.monotonic()
                if self._on_error is not None and now - self._last_error >= self._error_every:
                    self._last_error = now
                    self._on_error(exc)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop the thread."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)


def loop_reporter(prefix: str, stderr: bool = False) -> Callable[[Exception], None]:
    """An ``on_error`` that logs a warning on the running loop's thread (the log hub is
    not thread-safe), or to stderr when there is no loop to hand it to, or always
    (``stderr``: a log transport's failure, when no console would show the warning)."""
    import asyncio
    import sys

    from loguru import logger

    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def report(exc: Exception) -> None:
        message = f"{prefix}: {exc}"
        if loop is not None and not loop.is_closed() and not stderr:
            try:
                loop.call_soon_threadsafe(logger.warning, message)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        sys.stderr.write(message + "\n")

    return report
