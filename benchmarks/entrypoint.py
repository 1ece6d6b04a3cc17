r"""Entrypoint benchmark: Watt's front door against uvicorn, same trivial app, same load.

DESIGN.md's target is "entrypoint throughput of a trivial app >= the same app under
uvicorn". Every request crosses the main interpreter's loop, so this is Watt's
throughput ceiling. An absolute number means little on a shared machine, so both
servers are measured one after the other in the same invocation, with the same load
generator and settings, and the report's headline is the ratio Watt / uvicorn.

Usage::

    python benchmarks/entrypoint.py [--duration S] [--connections N] [--quick]

Debugging aid, hidden from ``--help``: ``--watt-cmd "COMMAND"`` replaces the Watt
command (``{python}``, ``{config}`` and ``{app_dir}`` are substituted; the command
runs from the repository root and must print ``http://127.0.0.1:<port>``). It exists
to check this script's own URL-parsing and failure paths, e.g. before ``watt.cli``
exists::

    python benchmarks/entrypoint.py --quick \
        --watt-cmd "{python} -m uvicorn --app-dir {app_dir} app:app --port 0"

Exit code 0 when both servers were measured, 1 when either failed (its output is
printed and the other is still measured), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import math
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from harness import (
    BENCH_DIR,
    READY_TIMEOUT_S,
    REPO_ROOT,
    LoadError,
    LoadSettings,
    ServerError,
    ServerProcess,
    ServerSpec,
    free_port,
    machine_summary,
    run_load,
    wrk_seconds,
    wrk_version,
)
from loadgen import LoadResult

APP_DIR = BENCH_DIR / "apps" / "trivial"
CONFIG = APP_DIR / "watt.json"
SUBJECT = "watt"
BASELINE = "uvicorn"
# DESIGN.md, "Targets": Watt's requests/s over uvicorn's, on the same trivial app.
TARGET_RPS_RATIO = 1.0

WRK_MISSING = (
    "wrk not found: apt-get install wrk (Debian/Ubuntu) or brew install wrk for faster, "
    "more accurate numbers; using the built-in Python load generator"
)




@dataclass(frozen=True)
class Outcome:
    """One server's measurement, or why there is none."""

    name: str
    result: LoadResult | None
    failure: str | None = None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; --quick only changes the defaults, explicit values still win."""
    parser = argparse.ArgumentParser(
        description="Watt's entrypoint against uvicorn on a trivial ASGI app (ratios).",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="seconds measured per server (default 10)"
    )
    parser.add_argument(
        "--connections", type=int, metavar="N", help="concurrent connections (default 32)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 s per server, 16 connections, no warm-up"
    )
    parser.add_argument("--watt-cmd", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    if args.connections is not None and args.connections < 1:
        parser.error("--connections must be >= 1")
    return args


def load_settings(args: argparse.Namespace, wrk: str | None) -> LoadSettings:
    """Quick: 3 s, 16 connections, no warm-up. Default: 10 s, 32 connections, 1 s warm-up."""
    if args.quick:
        duration, connections, warmup = 3.0, 16, 0.0
    else:
        duration, connections, warmup = 10.0, 32, 1.0
    return LoadSettings(
        duration_s=args.duration if args.duration is not None else duration,
        connections=args.connections if args.connections is not None else connections,
        warmup_s=warmup,
        wrk=wrk,
    )


def _substitute(word: str, values: dict[str, str]) -> str:
    """Replace each placeholder of ``values`` found in one word of --watt-cmd."""
    for placeholder, value in values.items():
        word = word.replace(placeholder, value)
    return word


def watt_spec(watt_cmd: str | None) -> ServerSpec:
    """Watt on the trivial app's watt.json, port 0; it prints its URL when ready."""
    if watt_cmd is None:
        argv = [sys.executable, "-m", "watt.cli", "start", "-c", str(CONFIG), "--port", "0"]
    else:
        values = {"{python}": sys.executable, "{config}": str(CONFIG), "{app_dir}": str(APP_DIR)}
        argv = [_substitute(word, values) for word in shlex.split(watt_cmd)]
    # From the repository root, so `-m watt.cli` imports this tree's watt.
    return ServerSpec(SUBJECT, argv, REPO_ROOT)


def uvicorn_spec() -> ServerSpec:
    """uvicorn on the same app module, on a port found free just before."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return ServerSpec(BASELINE, argv, APP_DIR, url=f"http://127.0.0.1:{port}")


def uvicorn_flavour() -> str:
    """uvicorn's version and the HTTP parser and loop it picks here.

    The baseline differs threefold between h11 + asyncio and httptools + uvloop
    (DESIGN.md, "The entrypoint ceiling"), so a ratio is only readable with it.
    """
    try:
        version = importlib.metadata.version("uvicorn")
    except importlib.metadata.PackageNotFoundError:
        return "uvicorn (not installed: pip install -e '.[bench]')"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {version}, 1 process, http {http}, loop {loop}"


def log(name: str, message: str) -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    print(f"[{name}] {message}", file=sys.stderr, flush=True)


def measure(spec: ServerSpec, settings: LoadSettings) -> Outcome:
    """Start one server, wait until it answers, load it, stop it; never raises for it.

    A server that fails is reported with its own output, so the user sees the
    real error (a traceback, a bad config key) rather than just "failed".
    """
    log(spec.name, f"starting: {shlex.join(spec.argv)}")
    server = ServerProcess(spec.name, spec.argv, spec.cwd)
    started = time.monotonic()
    result: LoadResult | None = None
    failure: str | None = None
    try:
        server.start()
        deadline = started + READY_TIMEOUT_S
        url = spec.url if spec.url is not None else server.wait_for_url(deadline)
        server.wait_until_ready(url, deadline)
        log(spec.name, f"ready at {url} after {time.monotonic() - started:.2f} s")
        warmup = f"{settings.warmup_s:g} s warm-up, then " if settings.warmup_s else ""
        log(spec.name, f"{warmup}measuring {settings.duration_s:g} s ...")
        result = run_load(
            url, settings.connections, settings.duration_s, settings.warmup_s, settings.wrk
        )
        code = server.returncode()
        if code is not None:
            raise ServerError(f"exited with code {code} during the load")
        if result.requests == 0:
            raise ServerError(f"answered no request during the load ({result.errors} errors)")
    except ServerError as exc:
        failure, result = str(exc), None
    except LoadError as exc:
        failure, result = f"load generator failed: {exc}", None
    finally:
        stop = server.stop()
        log(spec.name, f"stopped: {stop.describe()}")
    if failure is not None:
        log(spec.name, f"FAILED: {failure}")
        output = server.output()
        print(
            f"----- {spec.name} output -----\n{output or '(no output)'}\n-----",
            file=sys.stderr,
            flush=True,
        )
    return Outcome(spec.name, result, failure)


def format_latency(us: float) -> str:
    """Microseconds below 1 ms, milliseconds below 1 s, seconds above, as wrk prints them."""
    if math.isnan(us):
        return "n/a"
    if us < 1e3:
        return f"{us:.0f} us"
    return f"{us / 1e3:.2f} ms" if us < 1e6 else f"{us / 1e6:.2f} s"


def ratio(subject: float, baseline: float) -> str:
    """``subject / baseline`` as ``1.23x``, or n/a when it means nothing."""
    if baseline <= 0 or math.isnan(subject) or math.isnan(baseline):
        return "n/a"
    return f"{subject / baseline:.2f}x"


def format_report(outcomes: Sequence[Outcome]) -> str:
    """The table and the Watt / uvicorn ratios; a pure function of the outcomes."""
    lines = [
        (
            f"{'server':<10}{'requests/s':>12}{'p50':>11}{'p99':>11}{'requests':>11}"
            f"{'errors':>8}{'non-2xx':>9}"
        )
    ]
    for outcome in outcomes:
        res = outcome.result
        if res is None:
            lines.append(f"{outcome.name:<10}  FAILED: {outcome.failure}")
            continue
        lines.append(
            f"{outcome.name:<10}{res.requests_per_s:>12,.0f}{format_latency(res.p50_us):>11}"
            f"{format_latency(res.p99_us):>11}{res.requests:>11,}{res.errors:>8}"
            f"{res.non_2xx:>9}"
        )
    by_name = {o.name: o.result for o in outcomes}
    subject, baseline = by_name.get(SUBJECT), by_name.get(BASELINE)
    lines.append("")
    if subject is None or baseline is None:
        missing = SUBJECT if subject is None else BASELINE
        lines.append(f"{SUBJECT} / {BASELINE}: n/a ({missing} was not measured)")
        return "\n".join(lines)
    rps = ratio(subject.requests_per_s, baseline.requests_per_s)
    if rps == "n/a":
        verdict = "n/a"
    elif subject.requests_per_s >= TARGET_RPS_RATIO * baseline.requests_per_s:
        verdict = "met"
    else:
        verdict = "NOT met"
    lines += [
        f"{SUBJECT} / {BASELINE}:",
        (
            f"  requests/s   {rps:>7}   higher is better "
            f"(target >= {TARGET_RPS_RATIO:.2f}x: {verdict})"
        ),
        f"  p50 latency  {ratio(subject.p50_us, baseline.p50_us):>7}   lower is better",
        f"  p99 latency  {ratio(subject.p99_us, baseline.p99_us):>7}   lower is better",
    ]
    if any(r.errors or r.non_2xx for r in (subject, baseline)):
        lines.append("  warning: errors or non-2xx answers during the load; the ratios are suspect")
    return "\n".join(lines)


def header(settings: LoadSettings) -> str:
    """What was measured, on what, with what: printed before the runs start."""
    if settings.wrk is not None:
        tool = (
            f"{wrk_version(settings.wrk)}, {min(2, settings.connections)} threads, "
            f"{settings.connections} connections, {wrk_seconds(settings.duration_s)} s"
        )
        warmup = wrk_seconds(settings.warmup_s) if settings.warmup_s else 0
    else:
        tool = (
            f"built-in Python generator (own process), {settings.connections} connections, "
            f"{settings.duration_s:g} s"
        )
        warmup = settings.warmup_s
    tool += f" per server after {warmup:g} s warm-up" if warmup else " per server, no warm-up"
    return "\n".join(
        [
            "Watt for Python: entrypoint benchmark (trivial ASGI app, GET /)",
            f"machine:  {machine_summary()}",
            f"load:     {tool}",
            f"baseline: {uvicorn_flavour()}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure Watt, then uvicorn, then print the report; 1 if either failed."""
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    settings = load_settings(args, wrk)
    print(header(settings), flush=True)
    if wrk is None:
        print(WRK_MISSING, flush=True)
    print(flush=True)
    try:
        outcomes = [
            measure(watt_spec(args.watt_cmd), settings),
            measure(uvicorn_spec(), settings),
        ]
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    print(format_report(outcomes), flush=True)
    return 1 if any(o.result is None for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
