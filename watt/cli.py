"""The ``watt`` command.  The only module that turns errors into exit codes."""

from __future__ import annotations

import os
import sys
import threading

import click

from . import __version__
from .errors import WattError

EXIT_CONFIG = 2
EXIT_START = 1


def _default_config() -> str:
    for name in ("watt.json", "watt.toml"):
        if os.path.isfile(name):
            return name
    return "watt.json"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="watt")
def main() -> None:
    """Watt: run many Python web applications as one modular monolith."""


@main.command()
@click.option("-c", "--config", "config_path", default=None, metavar="FILE",
              help="watt.json or watt.toml (default: the one in the current folder).")
@click.option("--hostname", "--host", default=None, help="Override server.hostname.")
@click.option("-p", "--port", type=int, default=None,
              help="Override server.port (0 picks a free port).")
@click.option("--start-timeout", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="How long a worker may take to import its app and finish lifespan start-up.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"],
                                case_sensitive=False))
def start(config_path: str | None, hostname: str | None, port: int | None,
          start_timeout: float, log_level: str) -> None:
    """Start the runtime in production mode and print the entrypoint URL.

    Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when an
    application cannot start, 2 when the configuration is invalid.
    """
    from .main import run

    try:
        run(config_path or _default_config(), hostname=hostname, port=port,
            log_level=log_level, start_timeout=start_timeout)
    except WattError as exc:
        click.echo(f"error: {exc}", err=True)
        _exit(EXIT_CONFIG if exc.code.startswith("WATT_CONFIG") else EXIT_START)
    except KeyboardInterrupt:
        pass
    _exit(0)


def _exit(code: int) -> None:
    """Exit now, even if a worker thread is stuck in application code.

    A subinterpreter whose code never returns (an import that loops, a
    lifespan that hangs) cannot be killed, and interpreter finalization
    would wait for it forever: the command must end all the same.
    """
    stuck = [t for t in threading.enumerate() if t.name.startswith("watt-") and t.is_alive()]
    if stuck:
        click.echo(f"warning: {len(stuck)} worker(s) did not stop; exiting anyway", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
