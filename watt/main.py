"""``watt.run``: the blocking way in, with signal handling."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from .observability.logging import configure_logging
from .runtime import Runtime
from .tables import startup_table


def run(config, *, hostname: str | None = None, port: int | None = None,
        log_level: str | None = None, **options) -> None:
    """Start the runtime for ``config`` (a path, dict or Config) and serve until
    SIGINT or SIGTERM, then shut down gracefully (drain, lifespan shutdown).

    ``options`` go to :class:`~watt.Runtime` (``engine``, ``start_timeout``,
    ``graceful_timeout``).  Raises :class:`watt.WattError` when the config is
    invalid or an application cannot start.
    """
    configure_logging(log_level)  # until the config's `logger` section is read
    asyncio.run(_serve(config, hostname=hostname, port=port, log_level=log_level, **options))


async def _serve(config, *, hostname: str | None, port: int | None,
                 on_running: Callable[[Runtime], Awaitable[None]] | None = None,
                 **options) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def first_signal() -> None:
        stop.set()
        for sig in signals:  # a second signal does not wait for the graceful part
            try:
                loop.add_signal_handler(sig, force_exit)
            except (NotImplementedError, RuntimeError):
                pass

    def force_exit() -> None:
        print("Watt: second signal, exiting now", file=sys.stderr, flush=True)
        os._exit(130)

    for sig in signals:
        try:
            loop.add_signal_handler(sig, first_signal)
        except (NotImplementedError, RuntimeError):
            pass
    runtime = Runtime(config, hostname=hostname, port=port, **options)
    beside = None  # on_running's task (watt dev's file watcher), on this loop
    try:
        await runtime.start()
        from .management.dashboard import dashboard_line  # loaded already by the API

        # One write: a log line from another thread cannot land inside the table.
        sys.stdout.write(f"Watt is running at {runtime.url}\n{dashboard_line(runtime)}"
                         f"{startup_table(runtime)}\n")
        sys.stdout.flush()
        if on_running is not None:
            beside = loop.create_task(on_running(runtime))
        await stop.wait()
        print("Watt is stopping", file=sys.stderr, flush=True)
    finally:
        if beside is not None:
            beside.cancel()
        await runtime.stop()
        for sig in signals:
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass


