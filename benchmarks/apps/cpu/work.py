"""The CPU-bound work of the CPU scaling scenario: pure Python, holds the GIL throughout.

A fixed amount of integer arithmetic (no I/O, no sleep, no C call that releases the
GIL), so a worker that runs it is busy for its whole duration and two workers can
only go faster than one when they really run in parallel.
"""

ROUNDS = 30_000


def crunch(rounds: int = ROUNDS) -> int:
    """About 5 ms of pure-Python arithmetic (a shared 2-core VM); returns a checksum."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total
