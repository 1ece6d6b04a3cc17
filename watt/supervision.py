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
