"""The ``watt`` command.  The only module that turns errors into exit codes."""

from __future__ import annotations

import base64
import functools
import json
import os
import sys
import threading
from http import HTTPStatus
from pathlib import Path

import click

from . import __version__
from .cli_admin import admin
from .cli_build import build_deploy
from .cli_build import options as _deploy_options
from .cli_cache import cache
from .cli_config import env_option, mask_config
from .cli_create import create
from .cli_debug import debug_options, debug_session
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


#: The options `watt start` and `watt dev` share, outermost first.
_RUN_OPTIONS = (
    click.option("-c", "--config", "config_path", default=None, metavar="FILE",
                 help="watt.json or watt.toml (default: the one in the current folder)."),
    click.option("--hostname", "--host", default=None, help="Override server.hostname."),
    click.option("-p", "--port", type=int, default=None,
                 help="Override server.port (0 picks a free port)."),
    click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
                 help="Workers for every application (overrides the config)."),
    click.option("--start-timeout", type=float, default=60.0, show_default=True,
                 metavar="SECONDS",
                 help="How long a worker may take to import its app and finish lifespan "
                      "start-up."),
    click.option("--log-level", default=None,
                 type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"],
                                   case_sensitive=False),
                 help="Override logger.level (default: the config's, else INFO)."),
    env_option,
)


def _run_options(func):
    for option in reversed(_RUN_OPTIONS):
        func = option(func)
    return func


@main.command()
@_run_options
def start(config_path: str | None, hostname: str | None, port: int | None,
          workers: int | None, start_timeout: float, log_level: str) -> None:
    """Start the runtime in production mode and print the entrypoint URL.

    Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when an
    application cannot start, 2 when the configuration is invalid.
    """
    from .main import run

    _serve_and_exit(run, config_path, hostname=hostname, port=port, log_level=log_level,
                    start_timeout=start_timeout, workers=workers)


@main.command()
@_run_options
@debug_options
def dev(config_path: str | None, hostname: str | None, port: int | None,
        workers: int | None, start_timeout: float, log_level: str | None,
        apps: tuple[str, ...], debug: bool, debug_port: int) -> None:
    """Start the runtime and restart an application when a file in its folder changes.

    Only the changed application restarts (its new workers are ready before
    the old ones stop); the others keep serving.  When the new code fails to
    import or start, its traceback is shown and the old workers keep serving
    until a later change fixes it.  `--debug [APP...]`: one debugpy session for the
    applications (docs/debugging.md).  Exit codes as for `watt start`.
    """
    from .dev import run_dev

    _serve_and_exit(run_dev, config_path, hostname=hostname, port=port, log_level=log_level,
                    start_timeout=start_timeout, workers=workers,
                    debug=debug_session(debug, debug_port, apps))


def _serve_and_exit(serve, config_path: str | None, **options) -> None:
    """Run ``serve`` (watt.run, or watt dev's) until it returns, then exit with the
    code that says how it ended."""
    try:
        serve(config_path or _default_config(), **options)
    except WattError as exc:
        from .config_checks import locate

        locate(exc, config_path or _default_config())  # a key found wrong at start: its line
        click.echo(f"error: {exc}", err=True)
        _exit(EXIT_CONFIG if exc.code.startswith("WATT_CONFIG") else EXIT_START)
    except KeyboardInterrupt:
        pass
    _exit(0)


@main.command()
@click.option("-c", "--config", "config_path", default=None, metavar="FILE",
              help="watt.json or watt.toml (default: the one in the current folder).")
@_deploy_options
def build(config_path: str | None, container: bool, k8s: bool, out: str | None) -> None:
    """Run each application's build step (capability-defined, e.g. Django's collectstatic).

    Prints one line per application; exit 0 when every build passed, 1 when
    one failed (its output is shown), 2 when the configuration is invalid.
    --container / --k8s write a Docker build context / Kubernetes manifests instead
    (docs/deploying.md).
    """
    if container or k8s:
        return build_deploy(config_path or _default_config(), container, k8s, out)
    from .config import load_config
    from .runtime import resolve_capability

    try:
        loaded = load_config(config_path or _default_config())
        plan = [(app, *resolve_capability(app, loaded)) for app in loaded.applications]
    except WattError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    failed = False
    for app, capability, options in plan:
        if capability.build is None:
            click.echo(f"{app.id}: {capability.name}, nothing to build")
            continue
        status, output = capability.build(app.path, dict(options, env=dict(app.env)))
        click.echo(f"{app.id}: {capability.name} build {'ok' if status == 0 else 'FAILED'}")
        if status != 0:
            failed = True
            click.echo(output.rstrip(), err=True)
    sys.exit(1 if failed else 0)


@main.command("config")
@click.option("-c", "--config", "config_path", default=None, metavar="FILE",
              help="watt.json or watt.toml (default: the one in the current folder).")
@click.option("--resolved", is_flag=True,
              help="Show it as the runtime sees it: placeholders filled, paths absolute, "
                   "autoload expanded, defaults applied.")
@click.option("--schema", is_flag=True, help="Print the JSON schema of the configuration.")
@env_option
@click.option("--show-secrets", is_flag=True, help="Do not mask secret values.")
def config_command(config_path: str | None, resolved: bool, schema: bool,
                   show_secrets: bool) -> None:
    """Check a configuration (exit 2 with the error when invalid) and print it as JSON."""
    import json

    import msgspec

    from .config import generate_schema, load_config

    if schema:
        click.echo(json.dumps(generate_schema(), indent=2))
        return
    try:
        loaded = load_config(config_path or _default_config())
    except WattError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    data = msgspec.to_builtins(loaded if resolved else loaded.config)
    if not show_secrets:
        data = mask_config(data, loaded.logger.redact_paths())
    click.echo(json.dumps(data, indent=2))


# -- commands that talk to a running runtime (watt/management.py) -------------------------
EXIT_FAILED = 1  # the runtime answered with an error, a non-2xx/3xx inject, a stop that hung
EXIT_NO_RUNTIME = 3  # none running, several and no PID, unknown PID, or no answer
_NO_RUNTIME_CODES = ("WATT_MANAGEMENT_NO_RUNTIME", "WATT_MANAGEMENT_AMBIGUOUS",
                     "WATT_MANAGEMENT_UNREACHABLE", "WATT_MANAGEMENT_UNSAFE_DIR")


def _talks_to_runtime(func):
    """Turn the management client's errors into a message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except WattError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_NO_RUNTIME if exc.code in _NO_RUNTIME_CODES else EXIT_FAILED)

    return wrapper


def _target(pid: int | None) -> dict:
    """The runtime a command is about: ``pid``, else the only one running."""
    from .management import find_runtime

    return find_runtime(pid)


def _api(target: dict, method: str, path: str, payload=None, timeout: float | None = 30.0):
    from .management import PREFIX, call

    return call(target["socket"], method, PREFIX + path, payload, timeout=timeout)


def _split_pid(args: tuple[str, ...], names: list[str]) -> tuple[int | None, list[str]]:
    """``[PID] NAME...``: a leading PID is there when one more argument than
    ``names`` was given."""
    if len(args) == len(names) + 1:
        if not args[0].isdigit():
            raise click.UsageError(f"PID must be a number, got {args[0]!r}")
        return int(args[0]), list(args[1:])
    if len(args) != len(names):
        raise click.UsageError(f"expected [PID] {' '.join(names)}")
    return None, list(args)


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit}{(seconds % size) // subsize:02d}{sub}"
    return f"{seconds}s"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    from .tables import table

    return table(headers, rows)


def _json_out(data) -> None:
    click.echo(json.dumps(data, indent=2))


def _pid_and_app(args: tuple[str, ...]) -> tuple[int | None, list[str]]:
    """``[PID] [APP]``: a lone all-digits argument is a PID, else an application id."""
    if len(args) > 2:
        raise click.UsageError("expected [PID] [APP]")
    if len(args) == 2:
        return _split_pid(args, ["APP"])
    if args and args[0].isdigit():
        return int(args[0]), []
    return None, list(args)


def _complete_app(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of APP: the application ids of the only running runtime."""
    from click.shell_completion import CompletionItem

    from .management import find_runtime

    try:
        apps = find_runtime(None)["applications"]
    except (WattError, OSError, KeyError):
        return []
    return [CompletionItem(app) for app in apps if app.startswith(incomplete)]


pid_argument = click.argument("pid", type=int, required=False)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@main.command()
@json_option
@_talks_to_runtime
def ps(as_json: bool) -> None:
    """List the running Watt runtimes of this user.

    Columns: PID, UPTIME, URL (the entrypoint), CWD (where it was started),
    APPS (application ids).  A socket left by a runtime that died is removed.
    Exit codes: 0 (also when none is running).
    """
    from .management import list_runtimes

    runtimes = list_runtimes()
    if as_json:
        _json_out(runtimes)
        return
    if not runtimes:
        click.echo("no Watt runtime is running", err=True)
        return
    rows = [[str(r["pid"]), "?", f"not answering: {r['error']}", "", ""] if "error" in r else
            [str(r["pid"]), _uptime(r.get("uptime", 0)), r.get("url") or "-", r.get("cwd", ""),
             ",".join(r.get("applications", []))] for r in runtimes]
    click.echo(_table(["PID", "UPTIME", "URL", "CWD", "APPS"], rows))


@main.command()
@pid_argument
@json_option
@_talks_to_runtime
def applications(pid: int | None, as_json: bool) -> None:
    """Show the applications of a runtime and their workers.

    PID defaults to the only running runtime.  Columns: APP, KIND, ISOLATION,
    STATUS (ready, degraded: some workers ready, unavailable: none), HEALTH
    (healthy when every worker passes its health checks), RESTARTS (rolling
    restarts and restarted workers), WORKERS (index, status, and the
    interpreter id or process id).  Exit codes: 0; 1 the runtime
    answered with an error; 3 no runtime (or several and no PID).
    """
    apps = _api(_target(pid), "GET", "/applications")
    if as_json:
        _json_out(apps)
        return

    def worker(w: dict) -> str:
        where = f"pid {w['pid']}" if w.get("kind") == "process" else \
            f"interpreter {w.get('interpreter')}"
        return f"#{w['worker']} {w['status']} ({where})"

    rows = [[a["id"], a["kind"], a["isolation"], a["status"],
             "healthy" if a["healthy"] else "unhealthy", str(a["restarts"]),
             ", ".join(worker(w) for w in a["workers"])] for a in apps]
    click.echo(_table(["APP", "KIND", "ISOLATION", "STATUS", "HEALTH", "RESTARTS", "WORKERS"],
                      rows))


@main.command()
@click.argument("args", nargs=-1, required=True, metavar="[PID] APP PATH",
                shell_complete=_complete_app)
@click.option("-X", "--request", "method", default=None, metavar="METHOD",
              help="HTTP method (default: GET, or POST with --data).")
@click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="A request header; repeat for more.")
@click.option("-d", "--data", default=None, metavar="BODY",
              help="Request body; @FILE reads a file, @- standard input.")
@click.option("-i", "--include", is_flag=True, help="Print the response headers too.")
@click.option("--json", "as_json", is_flag=True,
              help='Print the API answer {"status", "headers", "body", "base64"}.')
@click.option("--timeout", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="How long to wait for the response.")
@_talks_to_runtime
def inject(args: tuple[str, ...], method: str | None, headers: tuple[str, ...],
           data: str | None, include: bool, as_json: bool, timeout: float) -> None:
    """Send a request to application APP over its channel (no socket, no port).

    Prints the status line (HTTP/1.1 200 OK), the headers with -i, an empty
    line, then the body.  PATH starts with '/' and may carry a query.
    Exit codes: 0 status 2xx/3xx; 1 any other status, or the runtime
    answered with an error (unknown APP); 3 no runtime.
    """
    pid, (app_id, path) = _split_pid(args, ["APP", "PATH"])
    if not path.startswith("/"):
        raise click.UsageError(f"PATH must start with '/', got {path!r}")
    pairs = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{header!r} is not 'NAME: VALUE'", param_hint="-H")
        pairs.append([name.strip(), value.strip()])
    body = b""
    if data is not None:
        if data == "@-":
            body = sys.stdin.buffer.read()
        elif data.startswith("@"):
            try:
                body = Path(data[1:]).read_bytes()
            except OSError as exc:
                raise click.BadParameter(str(exc), param_hint="-d") from exc
        else:
            body = data.encode()
    payload = {"method": (method or ("POST" if data is not None else "GET")).upper(),
               "path": path, "headers": pairs,
               "body": base64.b64encode(body).decode(), "base64": True}
    reply = _api(_target(pid), "POST", f"/applications/{app_id}/inject", payload,
                 timeout=timeout)
    if as_json:
        _json_out(reply)
    else:
        try:
            phrase = HTTPStatus(reply["status"]).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {reply['status']} {phrase}".rstrip()]
        if include:
            lines += [f"{name}: {value}" for name, value in reply["headers"]]
        click.echo("\n".join(lines) + "\n")
        content = base64.b64decode(reply["body"]) if reply["base64"] else reply["body"].encode()
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        if content and not content.endswith(b"\n") and sys.stdout.isatty():
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
    if not 200 <= reply["status"] < 400:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("args", nargs=-1, metavar="[PID] [APP]", shell_complete=_complete_app)
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long to wait for each application (default: no limit).")
@_talks_to_runtime
def restart(args: tuple[str, ...], timeout: float | None) -> None:
    """Rolling restart of APP (default: every application, one after the other).

    Each worker is replaced by a new one that is ready before the old one
    stops, so requests keep being served.  A lone numeric argument is a PID
    (give both PID and APP for an application whose id is a number).
    Exit codes: 0; 1 the restart failed or APP is unknown; 3 no runtime.
    """
    pid, app_ids = _pid_and_app(args)
    target = _target(pid)
    if not app_ids:
        app_ids = [a["id"] for a in _api(target, "GET", "/applications")]
    for app_id in app_ids:
        info = _api(target, "POST", f"/applications/{app_id}/restart", timeout=timeout)
        click.echo(f"restarted {app_id} in {target['pid']}: {len(info['workers'])} worker(s), "
                   f"{info['restarts']} restart(s) so far")


@main.command()
@pid_argument
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long to wait for the process to end (default: the runtime's "
                   "gracefulShutdown.runtime plus 5 s).")
@_talks_to_runtime
def stop(pid: int | None, timeout: float | None) -> None:
    """Stop a runtime gracefully (as SIGTERM does) and wait until its process is gone.

    Exit codes: 0 the process ended; 1 it was still running after the
    timeout; 3 no runtime.
    """
    from .management import wait_gone

    target = _target(pid)
    answer = _api(target, "POST", "/stop")
    limit = timeout if timeout is not None else float(answer.get("timeout") or 30) + 5
    click.echo(f"stopping {target['pid']}...", err=True)
    if not wait_gone(target["pid"], limit):
        raise WattError(f"process {target['pid']} still runs after {limit:g} s",
                        code="WATT_MANAGEMENT_STOP_TIMEOUT")
    click.echo(f"stopped {target['pid']}")


@main.command("env")
@click.argument("args", nargs=-1, metavar="[PID] [APP]", shell_complete=_complete_app)
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@_talks_to_runtime
def env_command(args: tuple[str, ...], as_json: bool) -> None:
    """Print the environment application APP sees, secrets masked (NAME=value lines).

    APP defaults to the entrypoint.  It is the environment its worker was
    started with: the runtime's own, with the application's `env` config on
    top.  Values of names with TOKEN, SECRET, PASSWORD, KEY, CREDENTIAL, AUTH
    (and the like) and passwords in URLs are shown as ****.
    Exit codes: 0; 1 APP is unknown; 3 no runtime.
    """
    pid, app_ids = _pid_and_app(args)
    target = _target(pid)
    app_id = app_ids[0] if app_ids else target.get("entrypoint")
    answer = _api(target, "GET", f"/applications/{app_id}/env")
    if as_json:
        _json_out(answer)
        return
    for name, value in answer["env"].items():
        click.echo(f"{name}={value}")


@main.command()
@click.argument("args", nargs=-1, metavar="[PID] [APP]", shell_complete=_complete_app)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=100, show_default=True,
              help="Recent lines to print first.")
@click.option("--level", type=click.Choice(["trace", "debug", "info", "warning", "error",
                                            "critical"], case_sensitive=False),
              default=None, help="Only lines at this level or above.")
@click.option("--raw", is_flag=True,
              help="The JSON lines as written (the default when stdout is not a terminal).")
@_talks_to_runtime
def logs(args: tuple[str, ...], follow: bool, lines: int, level: str | None,
         raw: bool) -> None:
    """Print a running runtime's log lines (of one application, or all), and follow them.

    APP may also be `watt`, the runtime's own messages.  Exit codes: 0, or 1
    when the runtime or the application is unknown.
    """
    from urllib.parse import urlencode

    from .management import PREFIX, stream_lines
    from .observability.logging import render

    pid, rest = _pid_and_app(args)
    target = _target(pid)
    query = {"lines": lines, "follow": "true" if follow else "false"}
    if rest:
        query["app"] = rest[0]
    if level:
        query["level"] = level.lower()
    readable = not raw and sys.stdout.isatty()
    try:
        for line in stream_lines(target["socket"], f"{PREFIX}/logs?{urlencode(query)}",
                                 timeout=None if follow else 30.0):
            if line:
                click.echo(render(line, colour=True) if readable else line)
    except KeyboardInterrupt:
        pass


@main.command()
@pid_argument
@click.option("--format", "fmt", type=click.Choice(["prometheus", "json"]),
              default="prometheus", show_default=True)
@_talks_to_runtime
def metrics(pid: int | None, fmt: str) -> None:
    """Print every worker's metrics, as the runtime's /metrics serves them."""
    data = _api(_target(pid), "GET", f"/metrics?format={fmt}")
    if fmt == "json":
        _json_out(data)
    else:
        click.echo(data, nl=False)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (click's own).

    \b
    bash:  eval "$(watt completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(watt completion zsh)"    (in ~/.zshrc)
    fish:  watt completion fish > ~/.config/fish/completions/watt.fish
    """
    from click.shell_completion import get_completion_class

    script = get_completion_class(shell)(main, {}, "watt", "_WATT_COMPLETE").source()
    click.echo(script)


def _exit(code: int) -> None:
    """Exit now, even if a worker thread is stuck in application code.

    A subinterpreter whose code never returns (an import that loops, a
    lifespan that hangs) cannot be killed, and interpreter finalization
    would wait for it forever: the command must end all the same.
    """
    stuck = [t for t in threading.enumerate() if t.name.startswith("watt-") and t.is_alive()]
    for thread in stuck:  # a worker that just failed may still be ending: 1 s in all
        thread.join(max(0.0, 1.0 / len(stuck)))
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        click.echo(f"warning: {len(stuck)} worker(s) did not stop; exiting anyway", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


main.add_command(admin)  # watt/cli_admin.py
main.add_command(create)  # watt/cli_create.py
main.add_command(cache)  # watt/cli_cache.py


if __name__ == "__main__":
    main()
