"""Supervision decisions, without I/O: when to restart a worker that died, when a
worker is unhealthy or not ready, and when an application scales up or down.

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

    The application's own checks (``applications[].health``) arrive in the same
    reports: ``live`` False makes a check unhealthy; ``ready`` False takes the
    worker out of routing (:attr:`serving`) without counting against it.  None
    means the application declares no such check.
    """

    __slots__ = ("elu", "grace", "interval", "last_report", "live", "max_elu", "max_memory",
                 "max_unhealthy", "memory", "ready", "unhealthy")

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
        self.ready: bool | None = None
        self.live: bool | None = None

    def report(self, elu_permille: int, memory: int, now: float, ready: int | None = None,
               live: int | None = None) -> None:
        self.elu = elu_permille / 1000
        self.memory = memory
        self.last_report = now
        self.ready = None if ready is None else bool(ready)
        self.live = None if live is None else bool(live)

    @property
    def serving(self) -> bool:
        """False while the application's readiness check says it is not ready."""
        return self.ready is not False

    def reason(self, now: float, ready_at: float) -> str | None:
        """Why the worker is unhealthy now, or None."""
        last = self.last_report if self.last_report is not None else ready_at
        if now - last > 2 * self.interval:
            return f"no health report for {now - last:.1f} s (event loop blocked?)"
        if self.live is False:
            return "the application's liveness check failed"
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


class Scaler:
    """When an application with ``workers: {min, max}`` gets one more worker or one less.

    Fed once per health check with the event-loop utilization (0-1) of each of
    its ready workers that has reported: when their average is above
    ``up_elu`` for ``checks`` checks in a row (and there are fewer than
    ``maximum`` workers) the answer is +1; when it is below ``down_elu`` for
    ``checks`` checks in a row (and there are more than ``minimum``) it is -1;
    else 0.  After a decision the counts start over, so the next step waits
    for ``checks`` more checks, measured with the new number of workers.
    """

    __slots__ = ("checks", "down_elu", "high", "low", "maximum", "minimum", "up_elu")

    def __init__(self, *, minimum: int, maximum: int, up_elu: float, down_elu: float,
                 checks: int) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"workers: min {minimum} must be >= 1 and <= max {maximum}")
        self.minimum, self.maximum = minimum, maximum
        self.up_elu, self.down_elu = up_elu, down_elu
        self.checks = max(1, checks)
        self.high = self.low = 0

    def decide(self, elus: list[float], workers: int) -> int:
        """+1, -1 or 0 for an application running ``workers`` workers now."""
        if not elus:  # nothing measured yet (workers starting): no opinion
            return 0
        average = sum(elus) / len(elus)
        self.high = self.high + 1 if average > self.up_elu else 0
        self.low = self.low + 1 if average < self.down_elu else 0
        if self.high >= self.checks and workers < self.maximum:
            self.high = self.low = 0
            return 1
        if self.low >= self.checks and workers > self.minimum:
            self.high = self.low = 0
            return -1
        return 0

    def reset(self) -> None:
        self.high = self.low = 0
