"""What a worker reports about itself to the main side: loop utilization, memory.

:class:`MeteredSelector` counts the time the event loop sleeps in ``select``;
event-loop utilization (ELU) is the rest.  :func:`report_health` sends a
HEALTH frame every interval, from the loop itself, so a loop that is blocked
sends nothing, and that silence is what the main side notices.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import time

from watt.channel import protocol as p


class MeteredSelector(selectors.DefaultSelector):
    """The loop's selector, counting nanoseconds spent waiting (idle)."""

    def __init__(self) -> None:
        super().__init__()
        self.idle_ns = 0

    def select(self, timeout=None):
        start = time.perf_counter_ns()
        try:
            return super().select(timeout)
        finally:
            self.idle_ns += time.perf_counter_ns() - start


def _memory_bytes(own_process: bool) -> int:
    """Resident memory of a process worker; -1 for a subinterpreter, whose memory
    cannot be told apart from the process's without tracing every allocation."""
    if not own_process:
        return -1
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return -1


async def report_health(channel, selector: MeteredSelector, interval: float,
                        own_process: bool) -> None:
    """Send ``(HEALTH, 0, elu_permille, memory_bytes)`` every ``interval`` seconds."""
    last_wall = time.perf_counter_ns()
    last_idle = selector.idle_ns
    while True:
        await asyncio.sleep(interval)
        wall = time.perf_counter_ns()
        idle = selector.idle_ns
        elapsed = max(wall - last_wall, 1)
        elu = max(0, min(1000, 1000 - (idle - last_idle) * 1000 // elapsed))
        last_wall, last_idle = wall, idle
        channel.send((p.HEALTH, 0, int(elu), _memory_bytes(own_process)))
