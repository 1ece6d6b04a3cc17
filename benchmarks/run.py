"""Watt for Python's benchmark suite: every scenario, side by side with its baselines.

Usage::

    python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--duration S] [--connections N]
    python benchmarks/run.py --list

``make bench`` runs it (``make bench QUICK=1`` for ``--quick``). Each scenario runs
Watt and its baselines one after the other in this one invocation and prints a table
(requests/s, p50/p99 latency, ratios to each baseline, the targets with verdicts).
At the end the numbers go to ``benchmarks/results/<UTC date>.json`` (a second run
that day gets ``-2``, ``-3``, ...) and a plot beside it (``.png``, matplotlib; skipped
with a message when matplotlib is missing).

Exit code 0 when every server of every scenario was measured, 1 when one failed (its
own output is printed and the rest still run), 2 for bad arguments, 130 on Ctrl-C.
A target that is not met does not change the exit code: results are data.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cache
import cpu
import edge
import edge_checks
import entrypoint
import http2
import memory
import mesh
import observability
import realistic
import startup
from harness import BENCH_DIR, REPO_ROOT, machine_summary, wrk_version
from suite import WRK_MISSING, Scenario, Settings, log

RESULTS_DIR = BENCH_DIR / "results"

SCENARIOS: dict[str, tuple[Callable[[Settings], Scenario], str]] = {
    "entrypoint": (entrypoint.scenario, "Watt (1, 2 workers) vs uvicorn, gunicorn, hypercorn, "
                   "granian on a trivial ASGI app"),
    "mesh": (mesh.scenario, "one call A -> B: Watt mesh vs loopback uvicorn pair vs in-process"),
    "cache": (cache.scenario, "a mesh call answered from httpCache vs by the application"),
    "cpu": (cpu.scenario, "CPU-bound handler: 1 vs 2 workers, subinterpreter, process, threads"),
    "memory": (memory.scenario, "RSS with 1, 2, 4 subinterpreter vs process workers"),
    "startup": (startup.scenario, "watt start to first 200, 1 and 3 applications"),
    "realistic": (realistic.scenario, "Django and Flask through Watt vs Gunicorn sync workers"),
    "observability": (observability.scenario, "access log + tracing + /metrics on vs off"),
    "edge": (edge.scenario, "rate limit + CORS + security headers on vs off (trivial app)"),
    "edge-checks": (edge_checks.scenario, "OpenAPI validation and JWT auth on vs off: "
                    "in-process µs per request, and requests/s (trivial app)"),
    "http2": (http2.scenario, "HTTP/2 cleartext with h2load: Watt (granian, hypercorn engines) "
              "vs granian and hypercorn alone"),
}

H2LOAD_NOTE = (
    "h2load not found: HTTP/2 rows skipped (apt-get install nghttp2-client, brew install "
    "nghttp2)"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Watt's benchmark suite: every scenario against its baselines (ratios).")
    parser.add_argument("--quick", action="store_true",
                        help="short runs (the whole suite in under 3 minutes on 2 cores)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="scenarios to run, comma-separated or repeated "
                        f"({', '.join(SCENARIOS)}); default all")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="seconds per load run (default 10, quick 3)")
    parser.add_argument("--connections", type=int, metavar="N",
                        help="connections of the throughput runs (default 32, quick 16)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    if args.connections is not None and args.connections < 1:
        parser.error("--connections must be >= 1")
    names = []
    for item in args.only or []:
        for name in filter(None, (n.strip() for n in item.split(","))):
            if name not in SCENARIOS:
                parser.error(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
            names.append(name)
    args.names = names or list(SCENARIOS)
    return args


def settings_from(args: argparse.Namespace, wrk: str | None) -> Settings:
    duration, connections, warmup = (2.0, 16, 0.0) if args.quick else (10.0, 32, 1.0)
    return Settings(
        quick=args.quick,
        duration_s=args.duration if args.duration is not None else duration,
        connections=args.connections if args.connections is not None else connections,
        warmup_s=warmup,
        wrk=wrk,
    )


def header(settings: Settings, h2load: str | None) -> str:
    tool = (f"{wrk_version(settings.wrk)} (-t2 -cN --latency)" if settings.wrk
            else "built-in Python generator (own process)")
    warm = f", {settings.warmup_s:g} s warm-up" if settings.warmup_s else ", no warm-up"
    lines = [
        "Watt for Python: benchmark suite" + (" (quick)" if settings.quick else ""),
        f"machine:  {machine_summary()}",
        f"load:     {tool}, {settings.connections} connections, "
        f"{settings.duration_s:g} s per server{warm}",
    ]
    if settings.wrk is None:
        lines.append(WRK_MISSING)
    if h2load is None:
        lines.append(H2LOAD_NOTE)
    return "\n".join(lines)


def results_path(suffix: str, day: str | None = None) -> Path:
    """benchmarks/results/<UTC date><suffix>; the first name that is free for the .json."""
    day = day or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    path, n = RESULTS_DIR / f"{day}{suffix}", 2
    while path.with_suffix(".json").exists():
        path = RESULTS_DIR / f"{day}-{n}{suffix}"
        n += 1
    return path


def _clean(value: object) -> object:
    """NaN is no JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, (_, what) in SCENARIOS.items():
            print(f"{name:<12}{what}")
        return 0
    wrk, h2load = shutil.which("wrk"), shutil.which("h2load")
    settings = settings_from(args, wrk)
    print(header(settings, h2load), flush=True)
    done: list[Scenario] = []
    began = time.monotonic()
    try:
        for name in args.names:
            run_scenario, _ = SCENARIOS[name]
            started = time.monotonic()
            result = run_scenario(settings)
            log(name, f"done in {time.monotonic() - started:.0f} s")
            done.append(result)
            print(f"\n=== {result.title} ===\n{result.text}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - began
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    base = results_path("")
    data = {
        "suite": "watt-bench",
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "machine": machine_summary(),
        "load": {"tool": wrk_version(wrk) if wrk else "python", "h2load": bool(h2load),
                 "duration_s": settings.duration_s, "connections": settings.connections,
                 "warmup_s": settings.warmup_s},
        "elapsed_s": round(elapsed, 1),
        "scenarios": {s.key: {"title": s.title, "failed": s.failed, **s.data} for s in done},
    }
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(_clean(data), indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {json_path.relative_to(REPO_ROOT)} (suite took {elapsed:.0f} s)")
    if not args.no_plot:
        import plot

        print(plot.write(done, base.with_suffix(".png"), data["utc"], settings.quick), flush=True)
    return 1 if any(s.failed for s in done) else 0


if __name__ == "__main__":
    sys.exit(main())
