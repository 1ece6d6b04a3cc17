"""CPU scaling scenario: does a second worker double a CPU-bound application's throughput?

DESIGN.md: own-GIL subinterpreters scale CPU work ~1.8x on 2 cores, threads of one
interpreter 1.0x. The target: 2 subinterpreter workers serve at least 1.8x the
requests/s of 1. Every GET of ``benchmarks/apps/cpu`` runs ``work.crunch()``
(pure-Python arithmetic that holds the GIL, ~5 ms here) in its handler, so a worker
serves one request at a time and requests/s counts how many compute at once:

- ``subinterpreter-1/2``: the ASGI app, ``isolation: subinterpreter``, 1 and 2 workers;
- ``process-1/2``: the same app, ``isolation: process``;
- ``threads-1/2``: the same work as a WSGI app in ONE subinterpreter worker whose
  WSGI bridge runs 1 or 2 threads: threads of one interpreter, one GIL.

Load: 4 connections (two requests queued per worker at 2 workers, so no worker ever
waits for the load generator), the suite's duration. The main interpreter's share
(forwarding ~200-400 requests/s) is small next to the work.
"""

from __future__ import annotations

from harness import BENCH_DIR
from suite import (
    Measured,
    Scenario,
    Settings,
    fmt_num,
    fmt_ratio,
    load_table,
    measure,
    ratio_value,
    target,
    targets_text,
    watt_spec,
)

APP_DIR = BENCH_DIR / "apps" / "cpu"
CONNECTIONS = 4
TARGET_SPEEDUP = 1.8

CONFIGS = [
    ("subinterpreter-1", "watt-subinterpreter.json", ["--workers", "1"],
     "1 subinterpreter worker"),
    ("subinterpreter-2", "watt-subinterpreter.json", ["--workers", "2"],
     "2 subinterpreter workers (own GIL each)"),
    ("process-1", "watt-process.json", ["--workers", "1"], "1 process worker"),
    ("process-2", "watt-process.json", ["--workers", "2"], "2 process workers"),
    ("threads-1", "watt-threads-1.json", [], "1 subinterpreter worker, WSGI, 1 thread"),
    ("threads-2", "watt-threads-2.json", [], "1 subinterpreter worker, WSGI, 2 threads (1 GIL)"),
]

# (two workers or threads, one, what the ratio says)
SPEEDUPS = [
    ("subinterpreter-2", "subinterpreter-1", "2 vs 1 subinterpreter workers"),
    ("process-2", "process-1", "2 vs 1 process workers"),
    ("threads-2", "threads-1", "2 vs 1 threads in one interpreter"),
    ("subinterpreter-2", "process-2", "2 subinterpreters vs 2 processes"),
    ("subinterpreter-1", "process-1", "1 subinterpreter vs 1 process"),
]


def speedups(rows: list[Measured]) -> list[dict]:
    by = {r.name: r for r in rows}
    out = []
    for a, b, text in SPEEDUPS:
        ra, rb = by.get(a), by.get(b)
        value = ratio_value(ra.rps, rb.rps) if ra and rb else float("nan")
        out.append({"label": text, "subject": a, "baseline": b,
                    "ratio": None if value != value else round(value, 3)})
    return out


def scenario(settings: Settings) -> Scenario:
    load = settings.load(connections=CONNECTIONS)
    rows = [
        measure(watt_spec(name, APP_DIR / config, *extra), load, "/", label)
        for name, config, extra, label in CONFIGS
    ]
    ups = speedups(rows)
    lines = [
        f"load: {CONNECTIONS} connections, {load.duration_s:g} s per configuration; "
        "handler: ~5 ms of pure-Python arithmetic (benchmarks/apps/cpu/work.py)",
        *load_table(rows),
        "",
        "speed-up (requests/s ratio, higher is better):",
    ]
    for up in ups:
        value = float("nan") if up["ratio"] is None else up["ratio"]
        lines.append(f"  {up['label']:<36}{fmt_ratio(value):>8}   ({up['subject']} / "
                     f"{up['baseline']})")
    by = {r.name: r for r in rows}
    sub = ups[0]["ratio"]
    sub2, sub1 = by["subinterpreter-2"], by["subinterpreter-1"]
    targets = [target(
        f"2 subinterpreter workers >= {TARGET_SPEEDUP}x 1 worker (CPU-bound)",
        None if sub is None else sub >= TARGET_SPEEDUP,
        f"{fmt_num(sub2.rps)} vs {fmt_num(sub1.rps)} requests/s "
        f"({fmt_ratio(float('nan') if sub is None else sub)})",
        sub2.suspect() or sub1.suspect(),
    )]
    lines += ["", *targets_text(targets)]
    return Scenario(
        key="cpu",
        title="CPU scaling, CPU-bound handler",
        text="\n".join(lines),
        data={"load": {"connections": CONNECTIONS, "duration_s": load.duration_s},
              "rows": [r.to_json() for r in rows], "speedups": ups, "targets": targets},
        failed=any(r.result is None for r in rows),
        plot={"kind": "bar", "title": f"CPU-bound handler, c={CONNECTIONS}",
              "ylabel": "requests/s", "labels": [r.name for r in rows],
              "values": [r.rps for r in rows], "subjects": ["subinterpreter-1",
                                                           "subinterpreter-2"]},
    )
