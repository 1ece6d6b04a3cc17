"""``watt create``: scaffold a project, or add an application to one (watt/scaffold.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import WattError
from .scaffold import KINDS


@click.command()
@click.argument("directory", default=".", metavar="[DIR]")
@click.option("--kind", type=click.Choice(list(KINDS)), default="starlette",
              show_default=True, help="Framework of the generated applications.")
@click.option("--add", "add", default=None, metavar="APP",
              help="Add application APP (folder DIR/APP) to the project in DIR instead.")
@click.option("--force", is_flag=True,
              help="Write into a folder that is not empty (only the generated files change).")
def create(directory: str, kind: str, add: str | None, force: bool) -> None:
    """Scaffold a project in DIR (default: the current folder), or add an application.

    The project: watt.json with an entrypoint `web` whose / calls the service
    `api` over the mesh (http://api.plt.local), a pytest test using the
    watt_runtime fixture, a README and requirements.txt; `watt start` runs it.
    Exit codes: 0; 1 refused (DIR not empty, APP already exists, no watt.json);
    2 bad usage.
    """
    from .cli import EXIT_CONFIG
    from .scaffold import add_application, create_project

    try:
        if add is not None:
            written = add_application(directory, add, kind=kind, force=force)
        else:
            written = create_project(directory, kind=kind, force=force)
    except WattError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG if exc.code.startswith("WATT_CONFIG") else 1)
    root = Path(directory)
    for path in written:
        click.echo(f"  wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    if add is not None:
        click.echo(f"added {add} ({kind}): reach it at http://{add}.plt.local")
        return
    click.echo(f"created a {kind} project in {root.resolve()}. Next:")
    steps = [] if directory == "." else [f"cd {directory}"]
    if KINDS[kind].requirement:
        steps.append("pip install -r requirements.txt")
    steps += ["watt start      # or: watt dev, to reload on changes", "pytest"]
    for step in steps:
        click.echo(f"  {step}")
