"""Start-up scenario: from ``watt start`` to the first 200 through the entrypoint.

The target: three applications answering within 1 s of start. The clock starts just
before the process is executed and stops at the first ``GET /`` answered 200, polled
every 2 ms from the moment the server printed its URL (Watt binds port 0 and prints
it once it listens). Configurations (``benchmarks/apps/startup``):

- ``watt-1-app``: one bare ASGI application;
- ``watt-3-apps``: an entrypoint whose ``/`` calls the two others through the mesh
  and answers 200 only when both did, so the first 200 means all three serve;
- ``uvicorn`` (baseline): the same one-application module under uvicorn, whose port
  is chosen before it starts.

Each is started several times (3 quick, 5 otherwise) and the median is reported,
with the fastest and slowest run: one run on a shared machine is one sample of its
load.
"""

from __future__ import annotations

import http.client
import statistics
import time

from harness import BENCH_DIR, READY_TIMEOUT_S, ServerError, ServerProcess, ServerSpec
from loadgen import check_url
from suite import (
    PY,
    Scenario,
    Settings,
    fmt_ratio,
    log,
    port_spec,
    print_output,
    ratio_value,
    target,
    targets_text,
    watt_spec,
)

APP_DIR = BENCH_DIR / "apps" / "startup"
POLL_S = 0.002
TARGET_S = 1.0


def _get_ok(url: str) -> bool:
    host, port, path = check_url(url + "/")
    conn = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def time_to_first_200(spec: ServerSpec) -> dict:
    """Seconds from exec to the URL printed and to the first 200; stops the server."""
    server = ServerProcess(spec.name, spec.argv, spec.cwd, env=spec.env)
    began = time.monotonic()
    deadline = began + READY_TIMEOUT_S
    try:
        server.start()
        url = spec.url if spec.url is not None else server.wait_for_url(deadline)
        url_s = time.monotonic() - began
        while not _get_ok(url):
            if time.monotonic() > deadline:
                raise ServerError(f"no 200 within {READY_TIMEOUT_S:g} s")
            code = server.wait_exit(POLL_S)
            if code is not None:
                raise ServerError(f"exited with code {code} before answering 200")
        ready_s = time.monotonic() - began
    except ServerError as exc:
        server.stop()
        print_output(server)
        return {"failure": str(exc)}
    server.stop()
    return {"url_s": round(url_s, 4), "first_200_s": round(ready_s, 4)}


def _summary(runs: list[dict]) -> dict:
    ok = [r["first_200_s"] for r in runs if "first_200_s" in r]
    if not ok:
        return {"median_s": None, "min_s": None, "max_s": None}
    return {"median_s": round(statistics.median(ok), 4), "min_s": min(ok), "max_s": max(ok)}


def scenario(settings: Settings) -> Scenario:
    repeats = 3 if settings.quick else 5
    makers = {
        "watt-1-app": lambda: watt_spec("watt-1-app", APP_DIR / "watt-1.json"),
        "watt-3-apps": lambda: watt_spec("watt-3-apps", APP_DIR / "watt-3.json"),
        "uvicorn": lambda: port_spec("uvicorn", lambda port: [
            PY, "-m", "uvicorn", "service:app", "--port", str(port), "--log-level", "warning"],
            APP_DIR),
    }
    runs: dict[str, list[dict]] = {name: [] for name in makers}
    for number in range(repeats):  # interleaved, so a slow moment hits all alike
        for name, make in makers.items():
            run = time_to_first_200(make())
            runs[name].append(run)
            log(name, f"run {number + 1}/{repeats}: "
                + (f"first 200 after {run['first_200_s']:.3f} s" if "first_200_s" in run
                   else f"FAILED: {run['failure']}"))
    summary = {name: _summary(r) for name, r in runs.items()}
    lines = [f"{repeats} starts each, interleaved; clock from exec to the first 200 on GET /",
             f"{'configuration':<16}{'median':>10}{'fastest':>10}{'slowest':>10}{'failed':>8}"]
    for name, s in summary.items():
        failed = sum(1 for r in runs[name] if "failure" in r)
        if s["median_s"] is None:
            lines.append(f"{name:<16}  FAILED: {runs[name][0]['failure']}")
            continue
        lines.append(f"{name:<16}{s['median_s']:>9.3f}s{s['min_s']:>9.3f}s{s['max_s']:>9.3f}s"
                     f"{failed:>8}")
    ratios = {}
    base = summary["uvicorn"]["median_s"]
    for name in ("watt-1-app", "watt-3-apps"):
        mine = summary[name]["median_s"]
        value = ratio_value(mine or float("nan"), base or float("nan"))
        ratios[name] = None if value != value else round(value, 3)
        lines.append(f"  {name} / uvicorn (median, lower is better): {fmt_ratio(value)}")
    three = summary["watt-3-apps"]
    targets = [target(
        f"three applications answering within {TARGET_S:g} s of start (median)",
        None if three["median_s"] is None else three["median_s"] <= TARGET_S,
        "n/a" if three["median_s"] is None else
        f"median {three['median_s']:.3f} s, slowest {three['max_s']:.3f} s",
    )]
    lines += ["", *targets_text(targets)]
    return Scenario(
        key="startup",
        title="Start-up, watt start to first 200",
        text="\n".join(lines),
        data={"repeats": repeats, "runs": runs, "summary": summary, "ratios_to_uvicorn": ratios,
              "targets": targets},
        failed=any("failure" in r for rs in runs.values() for r in rs),
        plot={"kind": "bar", "title": "Start-up: exec to first 200 (median)",
              "ylabel": "seconds", "labels": list(summary),
              "values": [s["median_s"] if s["median_s"] is not None else float("nan")
                         for s in summary.values()],
              "subjects": ["watt-1-app", "watt-3-apps"], "line": TARGET_S},
    )
