"""The edge's cost per request: entrypoint throughput with rate limit + CORS + security
headers on vs off (issue 12).

Two rows serve ``benchmarks/apps/trivial`` through ``watt start`` with 1 worker and
the same load, each twice, alternating (the best run of each counts):

- ``off``: ``watt.json``: no stage configured, so no pipeline at all (the engines
  only strip ``x-watt-*`` and rewrite ``x-forwarded-*``, as on every request);
- ``edge``: ``watt-edge.json``: ``server.rateLimit`` (a bucket per client, never
  empty at this load), ``server.cors`` (the load sends no ``Origin``: the stage
  scans the headers and lets the request pass) and ``server.securityHeaders``
  (five headers added to every response).

The requests/s rows depend on the machine's load; the scenario also times the
pipeline in-process (``in_process_us``: µs per request for building the request,
the three checks and the response headers, as the ``watt`` engine runs them), which
is steadier.

A trivial app is the worst case: the app costs nothing, so everything the edge adds
shows. Run it alone with ``python benchmarks/run.py --only edge``.
"""

from __future__ import annotations

import json
import sys
import timeit

from harness import BENCH_DIR
from observability import _best
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

APP_DIR = BENCH_DIR / "apps" / "trivial"
ROUNDS = 2
ROWS = [
    ("off", "watt.json", "Watt, 1 worker: no edge stage"),
    ("edge", "watt-edge.json", "Watt, 1 worker: rate limit + CORS + security headers"),
]


def in_process_us() -> float:
    """µs per request of the edge pipeline of ``watt-edge.json``, as the watt engine runs
    it (the best of 7 runs of 20,000)."""
    from itertools import chain

    from watt.config import load_config
    from watt.edge.info import make_edge

    raw = json.loads((APP_DIR / "watt-edge.json").read_text())
    raw["applications"][0]["path"] = str(APP_DIR)
    pipeline = make_edge(load_config(raw)).pipeline
    headers = [(b"host", b"127.0.0.1:3042"), (b"user-agent", b"wrk"), (b"accept", b"*/*"),
               (b"x-request-id", b"0" * 32), (b"x-forwarded-for", b"127.0.0.1"),
               (b"x-forwarded-proto", b"http"), (b"x-forwarded-host", b"127.0.0.1:3042")]
    flat = (b"content-type", b"text/plain", b"content-length", b"2")

    def one() -> None:
        req = pipeline.request("GET", "/", b"", list(headers), ("127.0.0.1", 5000), "http")
        pipeline.check(req)
        pairs = list(zip(flat[::2], flat[1::2], strict=False))
        tuple(chain.from_iterable(pipeline.on_response(req, 200, pairs)))

    return min(timeit.repeat(one, number=20_000, repeat=7)) / 20_000 * 1e6


def scenario(settings: Settings) -> Scenario:
    load = settings.load()
    runs: dict[str, list] = {name: [] for name, *_ in ROWS}
    for _ in range(ROUNDS):
        for name, config, label in ROWS:
            runs[name].append(measure(watt_spec(name, APP_DIR / config, "--workers", "1"),
                                      load, "/", label))
    rows = [_best(runs[name]) for name, *_ in ROWS]
    off, edge = rows
    value = ratio_value(edge.rps, off.rps)
    micro = in_process_us()
    lines = [*load_table(rows), "", f"edge / off = {fmt_ratio(value)} requests/s",
             f"the pipeline in-process: {micro:.1f} µs per request"]
    return rows_scenario("edge", "Edge stages (trivial app, 1 worker)", lines, rows, load,
                         {"ratio": value, "in_process_us": micro, "targets": []}, ["edge"],
                         plot_title="Edge stages")


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "edge", *sys.argv[1:]]))
