"""``watt cache invalidate``: drop entries of a running runtime's HTTP cache."""

from __future__ import annotations

import click


@click.group()
def cache() -> None:
    """The running runtime's HTTP cache (httpCache, docs/cache.md)."""


@cache.command()
@click.argument("pid", required=False)
@click.option("--key", "keys", multiple=True, metavar="URL",
              help="A full URL (http://APP.plt.local/path?query) whose GET and HEAD "
                   "responses are dropped; repeat for more.")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Drop every response tagged TAG (httpCache.cacheTagsHeader); repeat "
                   "for more.")
def invalidate(pid: str | None, keys: tuple[str, ...], tags: tuple[str, ...]) -> None:
    """Drop cached responses of runtime PID (default: the only one running).

    Prints how many entries were dropped.  Exit codes: 0; 1 the runtime has
    no httpCache, or a key is not a full URL; 3 no runtime.
    """
    from .cli import _api, _talks_to_runtime, _target

    if pid is not None and not pid.isdigit():
        raise click.UsageError(f"PID {pid!r} is not a process id" + (
            f": give a URL with --key {pid}" if "://" in pid else ""))
    if not keys and not tags:
        raise click.UsageError("give at least one --key or --tag")

    @_talks_to_runtime
    def run() -> None:
        from .cache import invalidation_key

        for key in keys:  # refused here, before any runtime is looked for
            invalidation_key(key)
        reply = _api(_target(int(pid) if pid else None), "POST", "/cache/invalidate",
                     {"keys": list(keys), "tags": list(tags)})
        click.echo(f"{reply['dropped']} entr{'y' if reply['dropped'] == 1 else 'ies'} dropped")

    run()
