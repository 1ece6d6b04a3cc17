"""Supervision decisions, without I/O: when to restart a worker that died.

Kept pure (like h11's state machine) so the rules are tested without
starting anything; ``pool.py`` applies them.
"""

from __future__ import annotations

#: Longest wait between two restarts of one worker.
MAX_BACKOFF_MS = 30_000
#: A worker that served this long before dying starts a fresh backoff series.
STABLE_AFTER_S = 30.0
DEFAULT_BACKOFF_MS = 1_000


class RestartPolicy:
    """Exponential backoff per worker slot: base, 2x base, 4x base ... up to 30 s.

    ``restart_on_error`` is the config value: ``True`` (base 1000 ms), an int
    (the base in ms; 0 restarts at once, every time), or ``False`` (never).
    """

    def __init__(self, restart_on_error: bool | int) -> None:
        if restart_on_error is True:
            self.base_ms: int | None = DEFAULT_BACKOFF_MS
        elif restart_on_error is False:
            self.base_ms = None
        else:
            self.base_ms = int(restart_on_error)
        self._failures: dict[int, int] = {}

    @property
    def enabled(self) -> bool:
        return self.base_ms is not None

    def delay_ms(self, slot: int, uptime_s: float) -> int | None:
        """A worker in ``slot`` died after ``uptime_s`` seconds: ms to wait before
        restarting it, or None when restarts are off."""
        if self.base_ms is None:
            return None
        if uptime_s >= STABLE_AFTER_S:
            self._failures[slot] = 0
        n = self._failures.get(slot, 0)
        self._failures[slot] = n + 1
        return min(self.base_ms * (2 ** n), MAX_BACKOFF_MS) if self.base_ms else 0

    def failed_start(self, slot: int) -> int | None:
        """The replacement itself failed to start: the next, longer, delay."""
        return self.delay_ms(slot, 0.0)


class HealthCheck:
    """One worker's health, from the HEALTH reports it sends and their absence.

    Called every ``interval``: a worker is unhealthy at a check when its last
    report is older than two intervals (its loop is blocked), its event-loop
    utilization is above ``max_elu`` or its memory above ``max_memory``.
    After ``max_unhealthy`` unhealthy checks in a row it is to be replaced.
    Nothing counts during ``grace`` seconds after the worker became ready.
    """

    __slots__ = ("elu", "grace", "interval", "last_report", "max_elu", "max_memory",
                 "max_unhealthy", "memory", "unhealthy")

    def __init__(self, *, interval: float, grace: float, max_elu: float, max_memory: int,
                 max_unhealthy: int) -> None:
        self.interval = interval
        self.grace = grace
        self.max_elu = max_elu
        self.max_memory = max_memory
        self.max_unhealthy = max_unhealthy
        self.last_report: float | None = None
        self.elu = 0.0
        self.memory = -1
        self.unhealthy = 0

    def report(self, elu_permille: int, memory: int, now: float) -> None:
        self.elu = elu_permille / 1000
        self.memory = memory
        self.last_report = now

    def reason(self, now: float, ready_at: float) -> str | None:
        """Why the worker is unhealthy now, or None."""
        last = self.last_report if self.last_report is not None else ready_at
        if now - last > 2 * self.interval:
            return f"no health report for {now - last:.1f} s (event loop blocked?)"
        if self.elu > self.max_elu:
            return f"event-loop utilization {self.elu:.2f} > maxELU {self.max_elu}"
        if self.max_memory and self.memory > self.max_memory:
            return f"memory {self.memory} bytes > maxMemory {self.max_memory}"
        return None

    def check(self, now: float, ready_at: float) -> str | None:
        """Count one check; the reason when the worker must be replaced, else None."""
        if now - ready_at < self.grace:
            return None
        reason = self.reason(now, ready_at)
        self.unhealthy = self.unhealthy + 1 if reason else 0
        return reason if self.unhealthy >= self.max_unhealthy else None
