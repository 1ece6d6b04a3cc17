"""Main-side handles that start, stop and watch one worker each.

Every worker kind sits behind :class:`~watt.isolation.base.WorkerHandle`;
``create_worker`` picks the kind.
"""

from __future__ import annotations

from .base import WorkerHandle, WorkerStartError


def create_worker(kind: str, **kwargs) -> WorkerHandle:
    if kind == "process":
        from .process import ProcessWorker

        return ProcessWorker(**kwargs)
    from .subinterpreter import SubinterpreterWorker

    return SubinterpreterWorker(**kwargs)


__all__ = ["WorkerHandle", "WorkerStartError", "create_worker"]
