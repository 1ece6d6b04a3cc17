"""HTTP cache: a mesh call answered from ``httpCache`` vs the same call answered by
the target application.

``watt start`` on ``benchmarks/apps/cache/watt.json``: ``front`` makes one
``watt.mesh.fetch`` per request to a target that works 1 ms of CPU and answers
"ok", three ways (one row each, each row its own runtime and the same load):

- ``hit``: the target is cached and its answer fresh for an hour: every call
  after the first is answered by the main side from the store, the target
  never sees it;
- ``miss``: the same cached target, but its answer is ``no-store``: the call
  goes through the main side's cache tap and on to the target every time (what
  the cache costs when it cannot help);
- ``plain``: a target left out of ``httpCache.applications``: after the first
  call the caller reaches it over a direct worker-to-worker link (no cache).

The ratio hit / plain is what caching a mesh call buys (the more the target
works per request, the more a hit saves; a hit itself costs a detour through
the main interpreter's loop, which a direct link avoids); miss / plain is the
price of that detour when nothing is stored.  Run it
alone with ``python benchmarks/run.py --only cache``.
"""

from __future__ import annotations

import sys

from harness import BENCH_DIR
from suite import (
    Scenario,
    Settings,
    fmt_ratio,
    load_table,
    measure,
    ratio_value,
    rows_scenario,
    watt_spec,
)

CONFIG = BENCH_DIR / "apps" / "cache" / "watt.json"
ROWS = [
    ("hit", "/hit", "Watt: mesh call answered from httpCache (fresh entry)"),
    ("miss", "/miss", "Watt: mesh call to a cached app, no-store answer (tap, no hit)"),
    ("plain", "/plain", "Watt: mesh call to an app without cache (direct link)"),
]


def scenario(settings: Settings) -> Scenario:
    load = settings.load()
    rows = [measure(watt_spec(f"cache-{name}", CONFIG), load, path, label)
            for name, path, label in ROWS]
    hit, miss, plain = rows
    hit_ratio = ratio_value(hit.rps, plain.rps)
    miss_ratio = ratio_value(miss.rps, plain.rps)
    lines = [*load_table(rows), "",
             f"cached hit / no cache = {fmt_ratio(hit_ratio)} requests/s",
             f"cached app, miss / no cache = {fmt_ratio(miss_ratio)} requests/s"]
    return rows_scenario("cache", "HTTP cache: a mesh call from the cache vs from the "
                         "application", lines, rows, load,
                         {"hit_ratio": hit_ratio, "miss_ratio": miss_ratio}, ["hit"])


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "cache", *sys.argv[1:]]))
