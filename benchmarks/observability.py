"""Observability overhead: entrypoint throughput with tracing and metrics on vs off.

The issue's target: throughput with metrics and tracing on stays within 10 % of the
same server with them off. Three rows serve ``benchmarks/apps/trivial`` through
``watt start`` with 1 worker and the same load (each measured twice, alternating;
the best run of each counts):

- ``quiet``: ``--log-level warning``: no access lines, no tracing;
- ``default``: the default logging, an access line per request (JSON on stdout,
  read by this harness as a log collector would), no tracing;
- ``observed``: ``watt-observed.json``: the same logging, plus a span per request
  (sampleRatio 1, memory exporter) and the ``/metrics`` server.

The target compares ``observed`` with ``default``; ``default`` against ``quiet``
shows what the access log itself costs. The per-worker request counters cannot be
switched off, so they are in every row.

A trivial app is the worst case: the app costs nothing, so everything added per
request shows. Run it alone with ``python benchmarks/run.py --only observability``.
"""

from __future__ import annotations

import sys

from harness import BENCH_DIR
from suite import (
    Scenario,
    Settings,
    fmt_num,
    fmt_ratio,
    load_table,
    measure,
    ratio_value,
    rows_scenario,
    target,
    targets_text,
    watt_spec,
)

APP_DIR = BENCH_DIR / "apps" / "trivial"
TARGET = 0.90  # "on" keeps at least 90 % of "off"'s requests/s


ROUNDS = 2  # alternating rounds; the best run of each row counts


def _best(rows: list) -> object:
    measured = [r for r in rows if r.result is not None]
    return max(measured, key=lambda r: r.rps) if measured else rows[0]


ROWS = [
    ("quiet", "watt.json", "warning", "Watt, 1 worker: warnings only (no access log)"),
    ("default", "watt.json", "info", "Watt, 1 worker: default logging (an access line per "
     "request), no tracing"),
    ("observed", "watt-observed.json", "info", "Watt, 1 worker: default logging + tracing of "
     "every request + /metrics"),
]


def scenario(settings: Settings) -> Scenario:
    load = settings.load()
    runs: dict[str, list] = {name: [] for name, *_ in ROWS}
    for _ in range(ROUNDS):
        for name, config, level, label in ROWS:
            runs[name].append(measure(watt_spec(name, APP_DIR / config, "--workers", "1",
                                                "--log-level", level), load, "/", label))
    rows = [_best(runs[name]) for name, *_ in ROWS]
    quiet, default, observed = rows
    value = ratio_value(observed.rps, default.rps)
    ok = None if value != value else value >= TARGET
    targets = [target("tracing + metrics on >= 0.90x off (requests/s)", ok,
                      f"{fmt_num(observed.rps)} vs {fmt_num(default.rps)} requests/s "
                      f"({fmt_ratio(value)})", observed.suspect() or default.suspect())]
    access = ratio_value(default.rps, quiet.rps)
    lines = [*load_table(rows), "",
             f"tracing + metrics: observed / default = {fmt_ratio(value)} requests/s",
             f"access log alone: default / quiet = {fmt_ratio(access)} requests/s", "",
             *targets_text(targets)]
    return rows_scenario("observability", "Observability overhead (trivial app, 1 worker)",
                         lines, rows, load, {"ratio": value, "access_log_ratio": access,
                                             "targets": targets}, ["observed"],
                         plot_title="Observability")


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "observability", *sys.argv[1:]]))
