"""Plain-text tables for the console: the ``watt`` commands and the start-up summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import Runtime


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, no trailing blanks."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(str(cell).ljust(width)
                               for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [headers, *rows])


def duration(seconds: float | None) -> str:
    """``850 ms``, ``1.2 s``, ``-`` when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def startup_table(runtime: Runtime) -> str:
    """What ``watt start`` prints once the runtime serves: one line per application,
    in start order, with how long its workers took to start and where it is reached
    (the entrypoint's URL, ``http://<id>.plt.local`` for the others)."""
    entry = runtime.config.entrypoint if runtime.config else None
    rows = [[pool.id, pool.capability.name, pool.isolation, str(len(pool.workers)),
             duration(getattr(pool, "start_duration", None)),
             (runtime.url or "-") if pool.id == entry else f"http://{pool.id}.plt.local"]
            for pool in runtime.pools.values()]
    return table(["APP", "KIND", "ISOLATION", "WORKERS", "START", "URL"], rows)
