r"""Mesh benchmark: what one call from application A to application B costs.

DESIGN.md's targets for the mesh: a call from A to ``http://b.plt.local`` adds less
than a loopback HTTP call between two uvicorn processes with the same client library,
a route that makes one mesh call serves >= 1.5x the requests/s of that loopback
pair, and the lean path ``watt.mesh.fetch`` adds under 50 us at p50. Three setups
run in one invocation, one after the other, on the same apps
(``benchmarks/apps/mesh/front.py`` calling ``back.py``) and with the same load:

- **watt mesh**: ``watt start`` on ``apps/mesh/watt.json``, front and back each in a
  subinterpreter; ``/fetch`` (``watt.mesh.fetch``) and ``/httpx`` (a reused
  ``httpx.AsyncClient``, on the mesh without code change);
- **loopback**: front and back as two uvicorn processes; ``/httpx`` and, when
  aiohttp is installed, ``/aiohttp`` call back at ``http://127.0.0.1:<port>/``;
- **in-process**: front alone under uvicorn, calling back's ASGI callable in its own
  loop (``/inprocess``, the floor) and through ``httpx.ASGITransport``
  (``/inprocess-httpx``, httpx's own cost without any network).

Each setup's ``/direct`` (answered by front itself) is measured too: the **added
latency of one hop** is p50(call route) - p50(/direct) at one connection, so the
cost of reaching front at all cancels out. Throughput is the call route's
requests/s at N connections.

Usage::

    python benchmarks/mesh.py [--quick] [--duration S] [--connections N]

Exit code 0 when every setup ran and every route was measured, 1 when a server
failed to start or died, or a route did not answer (its output is printed and the
other setups are still measured), 2 for bad arguments, 130 on Ctrl-C.
Results are data, not pass/fail: a target that is not met does not change the code.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
from loadgen import LoadResult, check_url
from suite import WRK_MISSING, Scenario, Settings, format_latency, log, uvicorn_flavour

APP_DIR = BENCH_DIR / "apps" / "mesh"
CONFIG = APP_DIR / "watt.json"
RESULTS_DIR = BENCH_DIR / "results"
# The front app reads these; never inherit them from the caller's shell.
APP_ENV = ("MESH_BENCH_BACK_URL", "MESH_BENCH_AIOHTTP")

# DESIGN.md, "Targets".
TARGET_FETCH_ADDED_P50_US = 50.0
TARGET_RPS_RATIO = 1.5

DIRECT = "/direct"
# Unmeasured load on each route before its latency rounds, whatever --quick says.
MIN_WARMUP_S = 1.0
# Below this an added latency is indistinguishable from zero (wrk: 10 us steps above 1 ms).
MIN_ADDED_US = 10.0




@dataclass(frozen=True)
class Setup:
    """Servers started in order (the last one is front) and the routes to measure."""

    key: str
    title: str
    servers: list[ServerSpec]
    routes: dict[str, str]  # call route -> client label
    note: str = ""


@dataclass
class RouteResult:
    """One route of one setup: latency at 1 connection, throughput at N, or why not."""

    setup: str
    route: str
    client: str
    latency: LoadResult | None = None  # the rounds combined, see combine_rounds
    latency_rounds: list[LoadResult] = field(default_factory=list)
    throughput: LoadResult | None = None
    failure: str | None = None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; --quick only changes the defaults, explicit values still win."""
    parser = argparse.ArgumentParser(
        description="Cost of one call between two applications: Watt mesh vs loopback "
        "vs in-process (ratios)."
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="seconds per measurement (default 10)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        metavar="N",
        help="connections of the throughput runs (default 32); latency runs use 1",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s per measurement, 16 connections, no warm-up before the requests/s runs",
    )
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    if args.connections is not None and args.connections < 1:
        parser.error("--connections must be >= 1")
    return args


def load_settings(args: argparse.Namespace, wrk: str | None) -> LoadSettings:
    """Quick: 3 s, 16 connections, no warm-up. Default: 10 s, 32 connections, 1 s warm-up.

    (The latency rounds are always preceded by a warm-up of their own, see run_setup.)
    """
    duration, connections, warmup = (3.0, 16, 0.0) if args.quick else (10.0, 32, 1.0)
    return LoadSettings(
        duration_s=args.duration if args.duration is not None else duration,
        connections=args.connections if args.connections is not None else connections,
        warmup_s=warmup,
        wrk=wrk,
    )


def _uvicorn(name: str, module: str, env: dict[str, str] | None = None) -> ServerSpec:
    """One uvicorn process serving ``module:app`` from the apps folder, access log off."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return ServerSpec(name, argv, APP_DIR, url=f"http://127.0.0.1:{port}", env=env or {})


def setups(have_aiohttp: bool) -> Iterator[Setup]:
    """The three setups, made one at a time so each picks its ports just before it starts."""
    watt = ServerSpec(
        "watt",
        [sys.executable, "-m", "watt.cli", "start", "-c", str(CONFIG), "--port", "0"],
        REPO_ROOT,  # so that `-m watt.cli` imports this tree's watt
    )
    yield Setup(
        "watt", "watt mesh", [watt], {"/fetch": "watt.mesh.fetch", "/httpx": "httpx (mesh)"}
    )
    back = _uvicorn("loopback-back", "back")
    front_env = {"MESH_BENCH_BACK_URL": f"{back.url}/"}
    loopback_routes = {"/httpx": "httpx"}
    note = ""
    if have_aiohttp:
        front_env["MESH_BENCH_AIOHTTP"] = "1"
        loopback_routes["/aiohttp"] = "aiohttp"
    else:
        note = "aiohttp not installed: /aiohttp skipped (pip install aiohttp to add it)"
    yield Setup(
        "loopback",
        "loopback",
        [back, _uvicorn("loopback-front", "front", front_env)],
        loopback_routes,
        note,
    )
    yield Setup(
        "inprocess",
        "in-process",
        [_uvicorn("inprocess-front", "front")],
        {"/inprocess": "ASGI call", "/inprocess-httpx": "httpx ASGITransport"},
    )


def probe(url: str) -> str | None:
    """One GET before the load: None if it answers 200 "ok", else what it answered.

    A call route that fails answers 502 fast; measured blindly it would look fast.
    """
    host, port, path = check_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=10.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"GET {path}: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if response.status != 200 or body != b"ok":
        return f"GET {path} answered {response.status}: {body[:300].decode(errors='replace')}"
    return None


def _print_output(server: ServerProcess) -> None:
    output = server.output()
    print(
        f"----- {server.name} output -----\n{output or '(no output)'}\n-----",
        file=sys.stderr,
        flush=True,
    )


def latency_rounds(duration_s: float) -> tuple[int, float]:
    """How many alternating latency rounds, and how long each: 3 s -> 3 x 1 s, 10 s -> 5 x 2 s."""
    rounds = max(1, min(5, int(duration_s)))
    return rounds, duration_s / rounds


def combine_rounds(rounds: Sequence[LoadResult]) -> LoadResult:
    """One result for several rounds of one route: counts add up, p50 and p99 are
    the medians of the rounds' (robust to one disturbed round)."""
    requests = sum(r.requests for r in rounds)
    duration = sum(r.duration_s for r in rounds)
    return LoadResult(
        tool=rounds[0].tool,
        connections=rounds[0].connections,
        duration_s=duration,
        requests=requests,
        requests_per_s=requests / duration if duration else 0.0,
        p50_us=statistics.median(r.p50_us for r in rounds),
        p99_us=statistics.median(r.p99_us for r in rounds),
        errors=sum(r.errors for r in rounds),
        non_2xx=sum(r.non_2xx for r in rounds),
    )


def _check_alive(servers: Sequence[ServerProcess]) -> None:
    for server in servers:
        code = server.returncode()
        if code is not None:
            raise ServerError(f"{server.name} exited with code {code} during the load")


def run_setup(setup: Setup, settings: LoadSettings) -> tuple[list[RouteResult], dict]:
    """Start the setup's servers, measure /direct and every call route, stop them.

    Never raises for a server: a failure is recorded on the routes it concerns and
    the failing server's own output is printed. Returns the routes and facts about
    the setup (engine, start-up time, failure) for the report.
    """
    routes = {DIRECT: "(none)", **setup.routes}
    results = {path: RouteResult(setup.key, path, client) for path, client in routes.items()}
    info: dict = {"title": setup.title, "note": setup.note, "failure": None}
    servers: list[ServerProcess] = []
    started = time.monotonic()
    try:
        url = ""
        for spec in setup.servers:
            log(spec.name, f"starting: {shlex.join(spec.argv)}")
            server = ServerProcess(spec.name, spec.argv, spec.cwd, env=spec.env)
            servers.append(server)
            server.start()
            deadline = time.monotonic() + READY_TIMEOUT_S
            url = spec.url if spec.url is not None else server.wait_for_url(deadline)
            server.wait_until_ready(
                url + ("/" if spec is not setup.servers[-1] else DIRECT), deadline
            )
            log(spec.name, f"ready at {url}")
        info["ready_s"] = round(time.monotonic() - started, 2)
        engine = re.search(r"listening at \S+ \((\w+)\)", servers[-1].output())
        if engine:
            info["engine"] = engine.group(1)
        live = []
        for path, result in results.items():
            result.failure = probe(url + path)
            if result.failure is None:
                live.append(result)
            else:
                log(setup.key, f"{path} FAILED: {result.failure}")
        # Latency in rounds that alternate the routes, so that a slow second of a
        # shared machine hits /direct and the call routes alike: the added latency
        # is a difference of two numbers and must not be one run's luck.
        # Every route is warmed up first, even in quick mode: a cold server answers
        # its first second slower, and /direct, always measured first, would absorb
        # that and make every hop look cheaper than it is.
        warmup_s = max(MIN_WARMUP_S, settings.warmup_s)
        for result in live:
            log(setup.key, f"{result.route}: warm-up, 1 connection, {warmup_s:g} s")
            run_load(url + result.route, 1, warmup_s, 0.0, settings.wrk)
        rounds, round_s = latency_rounds(settings.duration_s)
        for number in range(rounds):
            for result in live:
                log(
                    setup.key,
                    f"{result.route}: 1 connection, {round_s:g} s "
                    f"(latency round {number + 1}/{rounds})",
                )
                result.latency_rounds.append(
                    run_load(url + result.route, 1, round_s, 0.0, settings.wrk)
                )
            _check_alive(servers)
        for result in live:
            result.latency = combine_rounds(result.latency_rounds)
            if result.latency.requests == 0:
                result.failure = f"answered no request ({result.latency.errors} errors)"
                continue
            log(
                setup.key,
                f"{result.route}: {settings.connections} connections, {settings.duration_s:g} s",
            )
            result.throughput = run_load(
                url + result.route,
                settings.connections,
                settings.duration_s,
                settings.warmup_s,
                settings.wrk,
            )
            if result.throughput.requests == 0:
                result.failure = f"answered no request ({result.throughput.errors} errors)"
            _check_alive(servers)
    except (ServerError, LoadError) as exc:
        failure = str(exc) if isinstance(exc, ServerError) else f"load generator failed: {exc}"
        info["failure"] = failure
        log(setup.key, f"FAILED: {failure}")
        for result in results.values():
            if result.failure is None and result.throughput is None:
                result.failure = failure
        for server in servers:
            _print_output(server)
    finally:
        for server in reversed(servers):  # front first, then what it calls
            log(server.name, f"stopped: {server.stop().describe()}")
    if any(r.failure for r in results.values()) and info["failure"] is None:
        info["failure"] = "; ".join(
            f"{r.route}: {r.failure}" for r in results.values() if r.failure
        )
        for server in servers:
            _print_output(server)
    return list(results.values()), info


# ----- derived numbers: pure functions of the results --------------------------------


def added(result: RouteResult, direct: RouteResult | None, pct: str) -> float:
    """p50 or p99 of the call route minus the same of /direct, in us; nan if unknown."""
    if result.latency is None or direct is None or direct.latency is None:
        return math.nan
    return getattr(result.latency, pct) - getattr(direct.latency, pct)


def rps(result: RouteResult | None) -> float:
    if result is None or result.throughput is None:
        return math.nan
    return result.throughput.requests_per_s


def suspect(result: RouteResult | None) -> bool:
    """Errors or non-2xx answers: a call that fails fast is not a fast call."""
    return result is not None and any(
        load is not None and (load.errors or load.non_2xx)
        for load in (result.latency, result.throughput)
    )


def added_ratio(subject: float, baseline: float) -> float:
    """Ratio of two added latencies; nan when the baseline is within wrk's resolution
    of zero (it prints 1.03ms: 10 us steps), where any ratio would be noise."""
    return math.nan if baseline < MIN_ADDED_US else ratio_value(subject, baseline)


def ratio_value(subject: float, baseline: float) -> float:
    """``subject / baseline``; nan unless both are positive (an added latency at or
    below zero is noise around nothing, and a ratio to it means nothing)."""
    if math.isnan(subject) or math.isnan(baseline) or baseline <= 0 or subject <= 0:
        return math.nan
    return subject / baseline


def fmt_ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def fmt_added(us: float) -> str:
    if math.isnan(us):
        return "n/a"
    sign = "+" if us >= 0 else "-"
    return sign + format_latency(abs(us))


def fmt_rps(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


class Results:
    """All routes of all setups, looked up by (setup, route)."""

    def __init__(self, routes: Sequence[RouteResult]) -> None:
        self.routes = list(routes)
        self._by = {(r.setup, r.route): r for r in routes}

    def get(self, setup: str, route: str) -> RouteResult | None:
        return self._by.get((setup, route))

    def added(self, setup: str, route: str, pct: str = "p50_us") -> float:
        result = self.get(setup, route)
        return math.nan if result is None else added(result, self.get(setup, DIRECT), pct)

    def rps(self, setup: str, route: str) -> float:
        return rps(self.get(setup, route))


# (subject, baseline, what the comparison says)
COMPARISONS = [
    (("watt", "/fetch"), ("loopback", "/httpx"), "mesh fetch vs loopback httpx"),
    (("watt", "/httpx"), ("loopback", "/httpx"), "mesh httpx vs loopback httpx"),
    (("watt", "/fetch"), ("loopback", "/aiohttp"), "mesh fetch vs loopback aiohttp"),
    (("watt", "/fetch"), ("inprocess", "/inprocess"), "mesh fetch vs in-process call"),
    (("watt", "/httpx"), ("inprocess", "/inprocess-httpx"), "mesh httpx vs in-process httpx"),
]


def comparisons(res: Results) -> list[dict]:
    rows = []
    for subject, baseline, label in COMPARISONS:
        if res.get(*baseline) is None:
            continue  # e.g. aiohttp not installed
        rows.append(
            {
                "label": label,
                "added_p50_ratio": added_ratio(res.added(*subject), res.added(*baseline)),
                "added_p99_ratio": added_ratio(
                    res.added(*subject, "p99_us"), res.added(*baseline, "p99_us")
                ),
                "rps_ratio": ratio_value(res.rps(*subject), res.rps(*baseline)),
                "suspect": suspect(res.get(*subject)) or suspect(res.get(*baseline)),
            }
        )
    return rows


def _verdict(ok: bool | None, suspect_: bool) -> str:
    if ok is None:
        return "n/a"
    text = "met" if ok else "NOT met"
    return text + (" (suspect: errors or non-2xx during the load)" if suspect_ else "")


def targets(res: Results) -> list[dict]:
    """DESIGN.md's mesh targets, each with its verdict and the numbers behind it."""
    out = []
    fetch_p50 = res.added("watt", "/fetch")
    out.append(
        {
            "target": f"mesh hop (watt.mesh.fetch) adds < {TARGET_FETCH_ADDED_P50_US:g} us at p50",
            "verdict": _verdict(
                None if math.isnan(fetch_p50) else fetch_p50 < TARGET_FETCH_ADDED_P50_US,
                suspect(res.get("watt", "/fetch")),
            ),
            "numbers": f"added p50 {fmt_added(fetch_p50)}",
        }
    )
    for route, name in (("/httpx", "mesh httpx"), ("/fetch", "mesh fetch")):
        subject, base = res.added("watt", route), res.added("loopback", "/httpx")
        ok = None if math.isnan(subject) or math.isnan(base) else subject < base
        out.append(
            {
                "target": f"{name} adds less than loopback httpx (p50)",
                "verdict": _verdict(
                    ok, suspect(res.get("watt", route)) or suspect(res.get("loopback", "/httpx"))
                ),
                "numbers": f"{fmt_added(subject)} vs {fmt_added(base)} "
                f"({fmt_ratio(added_ratio(subject, base))}); p99 "
                f"{fmt_added(res.added('watt', route, 'p99_us'))} vs "
                f"{fmt_added(res.added('loopback', '/httpx', 'p99_us'))}",
            }
        )
    for route, name in (("/fetch", "mesh fetch"), ("/httpx", "mesh httpx")):
        value = ratio_value(res.rps("watt", route), res.rps("loopback", "/httpx"))
        ok = None if math.isnan(value) else value >= TARGET_RPS_RATIO
        out.append(
            {
                "target": f"{name} serves >= {TARGET_RPS_RATIO:g}x the requests/s "
                "of loopback httpx",
                "verdict": _verdict(
                    ok, suspect(res.get("watt", route)) or suspect(res.get("loopback", "/httpx"))
                ),
                "numbers": f"{fmt_rps(res.rps('watt', route))} vs "
                f"{fmt_rps(res.rps('loopback', '/httpx'))} requests/s "
                f"({fmt_ratio(value)})",
            }
        )
    return out


def breakdown(res: Results) -> list[tuple[str, float]]:
    """Where the time of one call goes, from differences of added p50 latencies."""
    fetch, mesh_httpx = res.added("watt", "/fetch"), res.added("watt", "/httpx")
    call, in_httpx = (
        res.added("inprocess", "/inprocess"),
        res.added("inprocess", "/inprocess-httpx"),
    )
    loop_httpx = res.added("loopback", "/httpx")
    return [
        ("mesh hop itself (watt.mesh.fetch)", fetch),
        ("httpx on top of the mesh (mesh httpx - mesh fetch)", mesh_httpx - fetch),
        ("httpx's own cost, no network (in-process httpx - in-process call)", in_httpx - call),
        (
            "loopback TCP + uvicorn under httpx (loopback httpx - in-process httpx)",
            loop_httpx - in_httpx,
        ),
    ]


def format_report(res: Results, infos: dict[str, dict], settings: LoadSettings) -> str:
    """The table, the ratios, the breakdown and the target verdicts."""
    n = settings.connections
    lines = [
        f"{'setup':<11}{'client':<21}{'route':<17}{'p50':>9}{'p99':>9}"
        f"{'added p50':>11}{'added p99':>11}{f'req/s c={n}':>12}"
    ]
    for result in res.routes:
        label = infos[result.setup]["title"]
        head = f"{label:<11}{result.client:<21}{result.route:<17}"
        if result.failure and result.latency is None:
            lines.append(f"{head}FAILED: {result.failure.splitlines()[0][:80]}")
            continue
        lat = result.latency
        p50 = format_latency(lat.p50_us) if lat else "n/a"
        p99 = format_latency(lat.p99_us) if lat else "n/a"
        if result.route == DIRECT:
            add50 = add99 = "-"
        else:
            add50 = fmt_added(res.added(result.setup, result.route))
            add99 = fmt_added(res.added(result.setup, result.route, "p99_us"))
        flag = "  !" if suspect(result) else ""
        lines.append(
            f"{head}{p50:>9}{p99:>9}{add50:>11}{add99:>11}{fmt_rps(rps(result)):>12}{flag}"
        )
    if any(suspect(r) for r in res.routes):
        lines.append("! errors or non-2xx answers during the load: that row is suspect")
    for info in infos.values():
        if info.get("engine"):
            lines.append(f"{info['title']}: entrypoint engine {info['engine']}")
        if info.get("note"):
            lines.append(f"note: {info['note']}")
    lines += ["", "ratios (added latency: lower is better; requests/s: higher is better):"]
    for row in comparisons(res):
        lines.append(
            f"  {row['label']:<32} added p50 {fmt_ratio(row['added_p50_ratio']):>8}"
            f"   added p99 {fmt_ratio(row['added_p99_ratio']):>8}"
            f"   requests/s {fmt_ratio(row['rps_ratio']):>7}"
            + ("  (suspect)" if row["suspect"] else "")
        )
    lines += ["", "where one call's added p50 goes (differences of the rows above):"]
    for label, value in breakdown(res):
        lines.append(f"  {label:<72}{fmt_added(value):>10}")
    lines += ["", "DESIGN.md targets:"]
    for t in targets(res):
        lines.append(f"  {t['target']:<62} {t['verdict']}: {t['numbers']}")
    return "\n".join(lines)


def client_versions() -> dict[str, str]:
    """Versions of the client libraries, and whether sniffio is there.

    Without sniffio, httpcore retries ``import sniffio`` (and fails) for every lock it
    makes, several times per request over TCP (encode/httpcore#1103); the mesh and
    ASGITransport paths skip httpcore, so a reader must know which case was measured.
    """
    versions = {}
    for name in ("httpx", "httpcore", "aiohttp", "sniffio"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent" if name == "sniffio" else "not installed"
    return versions


def header(settings: LoadSettings) -> str:
    """What was measured, on what, with what: printed before the runs start."""
    rounds, round_s = latency_rounds(settings.duration_s)
    if settings.wrk is not None:
        round_s, duration = wrk_seconds(round_s), wrk_seconds(settings.duration_s)
        warmup = wrk_seconds(settings.warmup_s) if settings.warmup_s else 0
        tool = (
            f"{wrk_version(settings.wrk)}: latency -t1 -c1, {rounds} alternating rounds "
            f"of {round_s} s per route; requests/s -t{min(2, settings.connections)} "
            f"-c{settings.connections}, {duration} s"
        )
    else:
        warmup = settings.warmup_s
        tool = (
            f"built-in Python generator (own process): latency 1 connection, {rounds} "
            f"alternating rounds of {round_s:g} s per route; requests/s "
            f"{settings.connections} connections, {settings.duration_s:g} s"
        )
    tool += (
        f"; every route warmed up {max(MIN_WARMUP_S, settings.warmup_s):g} s at 1 connection first"
    )
    tool += f", {warmup:g} s before each requests/s run" if warmup else ""
    versions = client_versions()
    return "\n".join(
        [
            "Watt for Python: mesh benchmark (front -> back, one call per request)",
            f"machine:  {machine_summary()}",
            f"load:     {tool}",
            f"loopback: {uvicorn_flavour()} per app",
            f"clients:  httpx {versions['httpx']} (httpcore {versions['httpcore']}, sniffio "
            f"{versions['sniffio']}), aiohttp {versions['aiohttp']}",
        ]
    )


def to_json(res: Results, infos: dict[str, dict], settings: LoadSettings) -> dict:
    def nan_to_none(value: float) -> float | None:
        return None if isinstance(value, float) and math.isnan(value) else value

    routes = []
    for r in res.routes:
        routes.append(
            {
                "setup": r.setup,
                "route": r.route,
                "client": r.client,
                "failure": r.failure,
                "latency_c1": asdict(r.latency) if r.latency else None,
                "latency_c1_rounds": [asdict(x) for x in r.latency_rounds],
                "throughput": asdict(r.throughput) if r.throughput else None,
                "added_p50_us": nan_to_none(res.added(r.setup, r.route))
                if r.route != DIRECT
                else None,
                "added_p99_us": nan_to_none(res.added(r.setup, r.route, "p99_us"))
                if r.route != DIRECT
                else None,
            }
        )
    return {
        "benchmark": "mesh",
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_summary(),
        "load": {
            "tool": wrk_version(settings.wrk) if settings.wrk else "python",
            "duration_s": settings.duration_s,
            "connections": settings.connections,
            "warmup_s": settings.warmup_s,
        },
        "loopback_server": uvicorn_flavour(),
        "clients": client_versions(),
        "setups": infos,
        "routes": routes,
        "ratios": [{k: nan_to_none(v) for k, v in row.items()} for row in comparisons(res)],
        "breakdown_p50_us": {label: nan_to_none(v) for label, v in breakdown(res)},
        "targets": targets(res),
    }


def write_json(data: dict) -> Path:
    """benchmarks/results/mesh-<UTC date>.json; a second run that day gets -2, -3, ..."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    path = RESULTS_DIR / f"mesh-{day}.json"
    n = 2
    while path.exists():
        path = RESULTS_DIR / f"mesh-{day}-{n}.json"
        n += 1
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def measure_all(settings: LoadSettings) -> tuple[Results, dict[str, dict]]:
    """Every setup, one after the other; the results and facts about each setup."""
    for name in APP_ENV:
        os.environ.pop(name, None)
    routes: list[RouteResult] = []
    infos: dict[str, dict] = {}
    for setup in setups(importlib.util.find_spec("aiohttp") is not None):
        results, info = run_setup(setup, settings)
        routes += results
        infos[setup.key] = info
    return Results(routes), infos


def scenario(settings: Settings) -> Scenario:
    """The mesh scenario of run.py: quick runs 1 s per measurement (1 latency round)."""
    load = settings.load(duration_s=1.0 if settings.quick else settings.duration_s)
    res, infos = measure_all(load)
    data = to_json(res, infos, load)
    text = header(load).split("\n", 2)[2] + "\n\n" + format_report(res, infos, load)
    plot_rows = [
        (f"{infos[r.setup]['title']} {r.client}", added(r, res.get(r.setup, DIRECT), "p50_us"))
        for r in res.routes if r.route != DIRECT
    ]
    return Scenario(
        key="mesh",
        title="Mesh hop, front -> back, one call per request",
        text=text,
        data={k: v for k, v in data.items() if k not in ("benchmark", "utc", "machine")},
        failed=any(info["failure"] for info in infos.values()),
        plot={
            "kind": "barh",
            "title": "Mesh: added p50 of one call (c=1)",
            "xlabel": "added p50 latency (us), lower is better",
            "labels": [label for label, _ in plot_rows],
            "values": [value for _, value in plot_rows],
            "subjects": [f"watt mesh {c}" for c in ("watt.mesh.fetch", "httpx (mesh)")],
            "line": TARGET_FETCH_ADDED_P50_US,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name in APP_ENV:
        os.environ.pop(name, None)
    wrk = shutil.which("wrk")
    settings = load_settings(args, wrk)
    print(header(settings), flush=True)
    if wrk is None:
        print(WRK_MISSING, flush=True)
    print(flush=True)
    routes: list[RouteResult] = []
    infos: dict[str, dict] = {}
    began = time.monotonic()
    try:
        for setup in setups(importlib.util.find_spec("aiohttp") is not None):
            results, info = run_setup(setup, settings)
            routes += results
            infos[setup.key] = info
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    log("mesh", f"all setups measured in {time.monotonic() - began:.0f} s")
    res = Results(routes)
    print(format_report(res, infos, settings), flush=True)
    path = write_json(to_json(res, infos, settings))
    print(f"\nresults: {path.relative_to(REPO_ROOT)}", flush=True)
    return 1 if any(info["failure"] for info in infos.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
