"""What the scenarios of ``benchmarks/run.py`` share: settings, one measured server, tables.

A scenario (``entrypoint``, ``mesh``, ``cpu``, ``memory``, ``startup``,
``realistic``) is a function ``scenario(settings) -> Scenario``: it starts its
servers one after the other, measures them with the same load, and returns the
report it printed (a table, ratios to each baseline, the DESIGN.md targets with
their verdicts), the numbers as JSON, and what to plot. Nothing here decides a
number; it starts, waits, loads, stops and formats.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import (
    LOCAL_URL,
    READY_TIMEOUT_S,
    REPO_ROOT,
    WATT_URL,
    LoadError,
    LoadSettings,
    ServerError,
    ServerProcess,
    ServerSpec,
    free_port,
    run_load,
)
from loadgen import LoadResult

PY = sys.executable

WRK_MISSING = (
    "wrk not found: apt-get install wrk (Debian/Ubuntu) or brew install wrk for faster, "
    "more accurate numbers; using the built-in Python load generator"
)


@dataclass(frozen=True)
class Settings:
    """How hard and how long every load of one suite run is; the same for every server.

    ``duration_s``/``connections``/``warmup_s`` are the throughput runs' (scenarios
    with a reason to differ, such as the CPU-bound one, say so in their header).
    """

    quick: bool
    duration_s: float
    connections: int
    warmup_s: float
    wrk: str | None

    def load(self, connections: int | None = None, duration_s: float | None = None) -> LoadSettings:
        return LoadSettings(
            duration_s=self.duration_s if duration_s is None else duration_s,
            connections=self.connections if connections is None else connections,
            warmup_s=self.warmup_s,
            wrk=self.wrk,
        )


@dataclass
class Measured:
    """One server (or configuration) under load, or why it could not be measured."""

    name: str
    label: str
    result: LoadResult | None = None
    failure: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.result.requests_per_s if self.result else math.nan

    def suspect(self) -> bool:
        return self.result is not None and bool(self.result.errors or self.result.non_2xx)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "label": self.label,
            "failure": self.failure,
            "load": asdict(self.result) if self.result else None,
            **self.extra,
        }


@dataclass
class Scenario:
    """What one scenario hands back to run.py: its report, its data, what to plot."""

    key: str
    title: str
    text: str
    data: dict
    failed: bool
    plot: dict | None = None


def log(name: str, message: str) -> None:
    """Progress goes to stderr, so stdout holds only the reports."""
    print(f"[{name}] {message}", file=sys.stderr, flush=True)


def print_output(server: ServerProcess) -> None:
    """A failed server's own last lines: the user sees the real error, not "failed"."""
    output = server.output()
    print(
        f"----- {server.name} output -----\n{output or '(no output)'}\n-----",
        file=sys.stderr,
        flush=True,
    )


def start_ready(spec: ServerSpec, path: str = "/") -> tuple[ServerProcess, str]:
    """Start a server and wait until ``GET path`` answers 200; raise ServerError if not.

    On failure the server is stopped and its output printed before the raise.
    """
    log(spec.name, f"starting: {shlex.join(spec.argv)}")
    server = ServerProcess(spec.name, spec.argv, spec.cwd, env=spec.env,
                           url_pattern=LOCAL_URL if spec.url is not None else WATT_URL)
    began = time.monotonic()
    try:
        server.start()
        deadline = began + READY_TIMEOUT_S
        url = spec.url if spec.url is not None else server.wait_for_url(deadline)
        server.wait_until_ready(url + path, deadline)
    except ServerError:
        server.stop()
        print_output(server)
        raise
    log(spec.name, f"ready at {url} after {time.monotonic() - began:.2f} s")
    return server, url


def measure(spec: ServerSpec, settings: LoadSettings, path: str = "/", label: str = "",
            loader: Callable | None = None) -> Measured:
    """Start one server, wait until it answers, load ``path``, stop it; never raises for it.

    ``loader(url, connections, duration_s, warmup_s, wrk)`` replaces the HTTP/1.1 load
    (wrk, else the Python generator): benchmarks/http2.py passes h2load."""
    out = Measured(spec.name, label)
    try:
        server, url = start_ready(spec, path)
    except ServerError as exc:
        out.failure = str(exc)
        log(spec.name, f"FAILED: {exc}")
        return out
    try:
        warm = f"{settings.warmup_s:g} s warm-up, then " if settings.warmup_s else ""
        log(spec.name, f"{warm}{settings.connections} connections, {settings.duration_s:g} s")
        out.result = (loader or run_load)(
            url + path, settings.connections, settings.duration_s, settings.warmup_s, settings.wrk
        )
        code = server.returncode()
        if code is not None:
            raise ServerError(f"exited with code {code} during the load")
        if out.result.requests == 0:
            raise ServerError(f"answered no request ({out.result.errors} errors)")
    except ServerError as exc:
        out.failure, out.result = str(exc), None
    except LoadError as exc:
        out.failure, out.result = f"load generator failed: {exc}", None
    finally:
        log(spec.name, f"stopped: {server.stop().describe()}")
    if out.failure:
        log(spec.name, f"FAILED: {out.failure}")
        print_output(server)
    return out


# ----- servers ----------------------------------------------------------------------


def watt_spec(name: str, config: Path, *extra: str) -> ServerSpec:
    """``watt start -c CONFIG --port 0`` from the repository root (this tree's watt),
    logging warnings and up like the baselines' ``--log-level warning`` (so no access
    lines: ``benchmarks/observability.py`` measures what they cost)."""
    argv = [PY, "-m", "watt.cli", "start", "-c", str(config), "--port", "0",
            "--log-level", "warning", *extra]
    return ServerSpec(name, argv, REPO_ROOT)


def port_spec(name: str, argv_for_port: Callable[[int], list[str]], cwd: Path) -> ServerSpec:
    """A server that takes a port on its command line: pick a free one just before."""
    port = free_port()
    return ServerSpec(name, argv_for_port(port), cwd, url=f"http://127.0.0.1:{port}")


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def uvicorn_flavour() -> str:
    """uvicorn's version and the HTTP parser and loop it picks here (they differ ~3x)."""
    http = "httptools" if have("httptools") else "h11"
    loop = "uvloop" if have("uvloop") else "asyncio"
    return f"uvicorn {version('uvicorn')} (http {http}, loop {loop})"


# ----- formatting -------------------------------------------------------------------


def format_latency(us: float) -> str:
    """Microseconds below 1 ms, milliseconds below 1 s, seconds above, as wrk prints them."""
    if math.isnan(us):
        return "n/a"
    if us < 1e3:
        return f"{us:.0f} us"
    return f"{us / 1e3:.2f} ms" if us < 1e6 else f"{us / 1e6:.2f} s"


def ratio_value(subject: float, baseline: float) -> float:
    """``subject / baseline``; nan unless both are positive numbers."""
    if math.isnan(subject) or math.isnan(baseline) or baseline <= 0 or subject <= 0:
        return math.nan
    return subject / baseline


def fmt_ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def fmt_num(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def verdict(ok: bool | None, suspect: bool = False) -> str:
    if ok is None:
        return "n/a (not measured)"
    text = "met" if ok else "NOT met"
    return text + (" (suspect: errors or non-2xx during the load)" if suspect else "")


def target(text: str, ok: bool | None, numbers: str, suspect: bool = False) -> dict:
    """One DESIGN.md/issue target with its verdict and the numbers behind it."""
    return {"target": text, "verdict": verdict(ok, suspect), "numbers": numbers}


def rows_scenario(key: str, title: str, lines: list[str], rows: Sequence[Measured],
                  load: LoadSettings, data: dict, subjects: list[str],
                  plot_title: str | None = None) -> Scenario:
    """A scenario made of servers measured under one load: its table (``lines``),
    every row in the data, and a bar of requests/s per row (titled ``plot_title``,
    default ``title``)."""
    return Scenario(
        key=key,
        title=title,
        text="\n".join(lines),
        data={"load": {"connections": load.connections, "duration_s": load.duration_s},
              "rows": [r.to_json() for r in rows], **data},
        failed=any(r.result is None for r in rows),
        plot={"kind": "bar", "title": f"{plot_title or title}, c={load.connections}",
              "ylabel": "requests/s", "labels": [r.name for r in rows],
              "values": [r.rps for r in rows], "subjects": subjects},
    )


def load_table(rows: Sequence[Measured], name_width: int = 22) -> list[str]:
    """requests/s, p50, p99, requests, errors and non-2xx, one line per server."""
    lines = [
        f"{'server':<{name_width}}{'requests/s':>12}{'p50':>11}{'p99':>11}{'requests':>11}"
        f"{'errors':>8}{'non-2xx':>9}  what"
    ]
    for row in rows:
        res = row.result
        if res is None:
            first = (row.failure or "failed").splitlines()[0][:90]
            lines.append(f"{row.name:<{name_width}}  FAILED: {first}")
            continue
        lines.append(
            f"{row.name:<{name_width}}{res.requests_per_s:>12,.0f}"
            f"{format_latency(res.p50_us):>11}{format_latency(res.p99_us):>11}"
            f"{res.requests:>11,}{res.errors:>8}{res.non_2xx:>9}  {row.label}"
        )
    if any(r.suspect() for r in rows):
        lines.append("warning: errors or non-2xx answers during a load: those rows are suspect")
    return lines


def ratio_matrix(
    rows: Sequence[Measured], subjects: Sequence[str], baselines: Sequence[str]
) -> tuple[list[str], dict]:
    """Each subject's requests/s and p50 over each baseline's, as text and as JSON.

    requests/s: higher is better; p50: lower is better (closed-loop load, so at N
    connections p50 is mostly queueing, about N / requests/s).
    """
    by = {r.name: r for r in rows}
    present = [b for b in baselines if b in by]
    width = max([12, *(len(b) + 2 for b in present)])
    lines = [
        "requests/s ratio (higher is better) | p50 ratio (lower is better), subject / baseline:",
        f"{'':<22}" + "".join(f"{b:>{width}}" for b in present),
    ]
    data: dict = {}
    for s in subjects:
        if s not in by:
            continue
        cells = []
        for b in present:
            rps = ratio_value(by[s].rps, by[b].rps)
            p50 = math.nan
            if by[s].result and by[b].result:
                p50 = ratio_value(by[s].result.p50_us, by[b].result.p50_us)
            data.setdefault(s, {})[b] = {"rps": _none(rps), "p50": _none(p50)}
            cells.append(f"{fmt_ratio(rps)}|{fmt_ratio(p50)}")
        lines.append(f"{s:<22}" + "".join(f"{c:>{width}}" for c in cells))
    return lines, data


def _none(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def targets_text(targets: Sequence[dict]) -> list[str]:
    lines = ["targets:"]
    for t in targets:
        lines.append(f"  {t['target']:<62} {t['verdict']}: {t['numbers']}")
    return lines
