"""``watt admin``: start (or find) a runtime's dashboard and print its URL.

The dashboard is served by the runtime itself (``watt/management/dashboard``);
this command only asks for it over the management socket.
"""

from __future__ import annotations

import click


@click.command()
@click.argument("pid", type=int, required=False)
@click.option("--hostname", "--host", default=None,
              help="Where the dashboard listens: an IP address or localhost (default "
                   "127.0.0.1).")
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=None,
              help="Its port (default 0: a free one).")
@click.option("--open", "open_browser", is_flag=True,
              help="Also open the URL in the default web browser.")
@click.option("--stop", "stop_it", is_flag=True, help="Stop the dashboard instead.")
def admin(pid: int | None, hostname: str | None, port: int | None, open_browser: bool,
          stop_it: bool) -> None:
    """Print the URL of the dashboard of runtime PID (default: the only one running).

    The runtime starts the dashboard if it is not on yet: one page with every
    application, live charts, the mesh, logs and traces, and restart and log
    level actions (docs/dashboard.md).  The URL carries a random token: who
    has it can act on the runtime, so share it no more than a shell.
    Exit codes: 0; 1 the dashboard cannot listen there; 3 no runtime.
    """
    from .cli import _api, _talks_to_runtime, _target

    @_talks_to_runtime
    def run() -> None:
        target = _target(pid)
        if stop_it:
            _api(target, "DELETE", "/dashboard")
            click.echo(f"dashboard of {target['pid']} stopped")
            return
        # Only what was asked for: a running dashboard is answered wherever it listens.
        where = {key: value for key, value in (("hostname", hostname), ("port", port))
                 if value is not None}
        state = _api(target, "POST", "/dashboard", where)
        click.echo(state["url"])
        if open_browser:
            import webbrowser  # here: every watt command imports this module

            webbrowser.open(state["url"])

    run()
