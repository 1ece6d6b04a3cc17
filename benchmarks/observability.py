"""Observability overhead: entrypoint throughput with logs, metrics and tracing on vs off.

The issue's target: throughput with metrics and tracing on stays within 10 % of the
same server with them off. Both rows serve ``benchmarks/apps/trivial`` through
``watt start`` with 1 worker and the same load:

- ``off``: ``--log-level warning`` (no access lines), no ``telemetry`` — the
  per-worker request counters cannot be switched off, so they are in both rows;
- ``on``: ``watt-observed.json``: an access line per request (JSON on stdout, read by
  this harness as a log collector would), a span per request (memory exporter),
  and the ``/metrics`` server.

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
    target,
    targets_text,
    watt_spec,
)

APP_DIR = BENCH_DIR / "apps" / "trivial"
TARGET = 0.90  # "on" keeps at least 90 % of "off"'s requests/s


def scenario(settings: Settings) -> Scenario:
    load = settings.load()
    rows = [
        measure(watt_spec("off", APP_DIR / "watt.json", "--workers", "1"), load, "/",
                "Watt, 1 worker: no access log, no tracing"),
        measure(watt_spec("on", APP_DIR / "watt-observed.json", "--workers", "1",
                          "--log-level", "info"), load, "/",
                "Watt, 1 worker: access log + tracing (every request) + /metrics"),
    ]
    off, on = rows
    value = ratio_value(on.rps, off.rps)
    ok = None if value != value else value >= TARGET
    targets = [target("observability on >= 0.90x off (requests/s)", ok,
                      f"{fmt_num(on.rps)} vs {fmt_num(off.rps)} requests/s ({fmt_ratio(value)})",
                      on.suspect() or off.suspect())]
    lines = [*load_table(rows), "", f"on / off: {fmt_ratio(value)} requests/s", "",
             *targets_text(targets)]
    return Scenario(
        key="observability",
        title="Observability overhead (trivial app, 1 worker)",
        text="\n".join(lines),
        data={"load": {"connections": load.connections, "duration_s": load.duration_s},
              "rows": [r.to_json() for r in rows], "ratio": value, "targets": targets},
        failed=any(r.result is None for r in rows),
        plot={"kind": "bar", "title": f"Observability on vs off, c={load.connections}",
              "ylabel": "requests/s", "labels": [r.name for r in rows],
              "values": [r.rps for r in rows], "subjects": ["on"]},
    )


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "observability", *sys.argv[1:]]))
