"""``watt dev --debug [APP...]`` options (registered on ``watt dev`` in :mod:`watt.cli`)."""

from __future__ import annotations

import click

__all__ = ["DEFAULT_DEBUG_PORT", "debug_options", "debug_session"]

#: debugpy's usual port, what IDE attach configurations default to.
DEFAULT_DEBUG_PORT = 5678


def debug_options(func):
    """``APP...``, ``--debug`` and ``--debug-port`` on ``watt dev``."""
    func = click.option("--debug-port", type=click.IntRange(0, 65535),
                        default=DEFAULT_DEBUG_PORT, show_default=True,
                        help="Where the debug adapter listens (0: any free port, printed).")(func)
    func = click.option("--debug", is_flag=True,
                        help="Start a debugpy adapter on 127.0.0.1 for one IDE session over "
                             "APP... (default: every application); they run in process "
                             "workers (docs/debugging.md).")(func)
    return click.argument("apps", nargs=-1, metavar="[APP...]")(func)


def debug_session(debug: bool, port: int, apps: tuple[str, ...]):
    """The :class:`watt.debug.DebugSession` that ``watt dev`` starts, or None."""
    if apps and not debug:
        raise click.UsageError("APP... names the applications to debug: add --debug")
    if not debug:
        return None
    from .debug import DebugSession  # msgspec, loguru, pdb: not for every command

    return DebugSession(apps, port)
