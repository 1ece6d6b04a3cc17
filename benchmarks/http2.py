"""HTTP/2 scenario: the trivial app over HTTP/2 cleartext (prior knowledge), with h2load.

Watt serves HTTP/2 with ``server.engine: granian`` (embedded) or ``hypercorn``; the
default ``watt`` engine speaks HTTP/1.1 only. Rows:

- ``watt-granian-h2``, ``watt-hypercorn-h2``: ``watt start`` with those engines, 1 worker;
- ``granian-h2``, ``hypercorn-h2``: the same app under each server alone, 1 process.

Load: h2load (nghttp2's), the suite's connections, 10 concurrent streams per
connection, the suite's duration. h2load reports the mean and the max time per
request, not percentiles: the table's p50 column holds the **mean** and p99 the
**max**. Skipped, with how to install it, when h2load is missing. Run it alone with
``python benchmarks/run.py --only http2``.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys

from harness import BENCH_DIR, LoadError
from loadgen import LoadResult
from suite import (
    PY,
    Scenario,
    Settings,
    fmt_ratio,
    have,
    load_table,
    measure,
    port_spec,
    ratio_value,
    watt_spec,
)

APP_DIR = BENCH_DIR / "apps" / "trivial"
STREAMS = 10
_UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def _us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(match[1]) * _UNIT_US[match[2]] if match else math.nan


def parse_h2load(text: str, connections: int, duration_s: float) -> LoadResult:
    """h2load's summary: req/s, requests, failures, and mean/max time per request."""
    finished = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    times = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if not (finished and done and times):
        raise LoadError(f"could not read h2load's output:\n{text}")
    return LoadResult(
        tool="h2load", connections=connections, duration_s=duration_s,
        requests=int(done[3]), requests_per_s=float(finished[1]),
        p50_us=_us(times[3]), p99_us=_us(times[2]),  # mean and max: see the docstring
        errors=int(done[4]) + int(done[5]),
        non_2xx=int(codes[3]) + int(codes[4]) if codes else 0)


def h2load_loader(h2load: str):
    def run(url: str, connections: int, duration_s: float, warmup_s: float, _wrk) -> LoadResult:
        argv = [h2load, "-c", str(connections), "-m", str(STREAMS), "-D", f"{duration_s:g}"]
        if warmup_s:
            argv += ["--warm-up-time", f"{warmup_s:g}"]
        done = subprocess.run([*argv, url], capture_output=True, text=True,
                              timeout=duration_s + warmup_s + 60)
        if done.returncode != 0:
            raise LoadError(f"h2load exited with {done.returncode}:\n{done.stdout}{done.stderr}")
        return parse_h2load(done.stdout, connections, duration_s)

    return run


def _hypercorn(port: int) -> list[str]:
    return [PY, "-m", "hypercorn", "-b", f"127.0.0.1:{port}", "app:app"]


def _granian(port: int) -> list[str]:
    return [PY, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port",
            str(port), "--workers", "1", "--log-level", "warning", "app:app"]


def scenario(settings: Settings) -> Scenario:
    h2load = shutil.which("h2load")
    if h2load is None:
        text = ("h2load not found: HTTP/2 rows skipped (apt-get install nghttp2-client, "
                "brew install nghttp2)")
        return Scenario(key="http2", title="HTTP/2 cleartext (h2load)", text=text,
                        data={"skipped": text}, failed=False)
    load = settings.load()
    loader = h2load_loader(h2load)
    servers = [
        (watt_spec("watt-granian-h2", APP_DIR / "watt-granian.json", "--workers", "1"),
         "Watt, 1 worker, engine granian"),
        (watt_spec("watt-hypercorn-h2", APP_DIR / "watt-hypercorn.json", "--workers", "1"),
         "Watt, 1 worker, engine hypercorn"),
        (port_spec("hypercorn-h2", _hypercorn, APP_DIR), "hypercorn alone, 1 process"),
    ]
    if have("granian"):
        servers.append((port_spec("granian-h2", _granian, APP_DIR),
                        "granian alone, 1 process"))
    rows = [measure(spec, load, "/", label, loader=loader) for spec, label in servers]
    by = {r.name: r for r in rows}
    ratios = {}
    lines = [f"h2load, {load.connections} connections x {STREAMS} streams; p50 column = "
             "mean, p99 column = max (h2load gives no percentiles)", *load_table(rows), ""]
    for subject, baseline in (("watt-granian-h2", "granian-h2"),
                              ("watt-granian-h2", "hypercorn-h2"),
                              ("watt-hypercorn-h2", "hypercorn-h2")):
        if subject in by and baseline in by:
            value = ratio_value(by[subject].rps, by[baseline].rps)
            ratios[f"{subject}/{baseline}"] = None if math.isnan(value) else value
            lines.append(f"{subject} / {baseline}: {fmt_ratio(value)} requests/s")
    return Scenario(
        key="http2", title="HTTP/2 cleartext, trivial app (h2load)", text="\n".join(lines),
        data={"load": {"connections": load.connections, "streams": STREAMS,
                       "duration_s": load.duration_s},
              "rows": [r.to_json() for r in rows], "ratios": ratios},
        failed=any(r.result is None for r in rows),
        plot={"kind": "bar", "title": f"HTTP/2 (h2load), c={load.connections}x{STREAMS}",
              "ylabel": "requests/s", "labels": [r.name for r in rows],
              "values": [r.rps for r in rows], "subjects": ["watt-granian-h2",
                                                            "watt-hypercorn-h2"]},
    )


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "http2", *sys.argv[1:]]))
