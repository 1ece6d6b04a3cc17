"""Memory scenario: what one more worker costs, subinterpreter against process.

The target: each extra subinterpreter worker costs at most 30 MB, and less than an
extra process worker. For 1, 2 and 4 workers of each isolation, ``watt start`` runs
until it answers, gets a few hundred requests (so lazily built state exists), and then
the memory of its whole session (the runtime process and every child it started) is
read from /proc:

- **RSS** summed over the processes, as the issue asks. For process workers this
  counts the pages they share with each other (the interpreter binary, shared
  libraries) once per process, so it overstates what a process worker really costs;
- **PSS** (proportional set size, /proc/PID/smaps_rollup) summed: shared pages split
  among the processes that map them, so the sum is what the machine really spends.

MB per extra worker = (memory at 4 workers - memory at 1) / 3. Two applications:
``apps/memory`` (a small Starlette service) and ``apps/trivial`` (a bare ASGI
callable: Watt's own per-worker floor). uvicorn serving the Starlette app is a
reference row: one whole Python web server process.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

from harness import BENCH_DIR, ServerError, ServerSpec
from loadgen import check_url
from suite import (
    PY,
    Scenario,
    Settings,
    fmt_num,
    fmt_ratio,
    log,
    port_spec,
    ratio_value,
    start_ready,
    target,
    targets_text,
    watt_spec,
)

MB = 1024 * 1024
WORKERS = (1, 2, 4)
ISOLATIONS = ("subinterpreter", "process")
APPS = {"starlette": BENCH_DIR / "apps" / "memory", "trivial": BENCH_DIR / "apps" / "trivial"}
WARM_REQUESTS = 200
TARGET_MB_PER_WORKER = 30.0


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is ``sid`` (the servers run in their own)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # Fields after the command (which may hold spaces) start after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return sorted(pids)


def _kib(path: str, key: str) -> int:
    """A "Key:   123 kB" line of a /proc file, in bytes; 0 if the process is gone."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def session_memory(sid: int) -> dict:
    """Summed RSS and PSS of a session's processes, in bytes, and how many there are."""
    pids = session_pids(sid)
    return {
        "processes": len(pids),
        "rss": sum(_kib(f"/proc/{pid}/status", "VmRSS") for pid in pids),
        "pss": sum(_kib(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids),
    }


def warm(url: str, requests: int = WARM_REQUESTS) -> None:
    """A few hundred GETs on one kept-alive connection, round-robined over the workers."""
    host, port, path = check_url(url + "/")
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        for _ in range(requests):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise ServerError(f"GET / answered {response.status} while warming up")
    except (OSError, http.client.HTTPException) as exc:
        raise ServerError(f"GET / failed while warming up: {exc}") from exc
    finally:
        conn.close()


def measure_memory(spec: ServerSpec) -> dict:
    """Start, warm, read the session's memory, stop; a failure is recorded, not raised."""
    row: dict = {"name": spec.name, "failure": None}
    try:
        server, url = start_ready(spec)
    except ServerError as exc:
        row["failure"] = str(exc)
        return row
    try:
        warm(url)
        row.update(session_memory(server.pid))
        log(spec.name, f"{row['processes']} processes, RSS {row['rss'] / MB:.1f} MB, "
            f"PSS {row['pss'] / MB:.1f} MB")
    except ServerError as exc:
        row["failure"] = str(exc)
    finally:
        log(spec.name, f"stopped: {server.stop().describe()}")
    return row


def per_worker(rows: dict[str, dict], app: str, isolation: str, key: str) -> float:
    """(memory at 4 workers - at 1) / 3 in MB; nan when either is missing."""
    low, high = rows.get(f"{app}-{isolation}-1"), rows.get(f"{app}-{isolation}-4")
    if not low or not high or low.get("failure") or high.get("failure"):
        return float("nan")
    return (high[key] - low[key]) / (WORKERS[-1] - WORKERS[0]) / MB


def _uvicorn(app_dir: Path):
    return port_spec("uvicorn-starlette", lambda port: [
        PY, "-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning"], app_dir)


def scenario(settings: Settings) -> Scenario:
    rows: dict[str, dict] = {}
    for app, app_dir in APPS.items():
        for isolation in ISOLATIONS:
            for n in WORKERS:
                name = f"{app}-{isolation}-{n}"
                spec = watt_spec(name, app_dir / f"watt-{isolation}.json", "--workers", str(n))
                rows[name] = measure_memory(spec)
    rows["uvicorn-starlette"] = measure_memory(_uvicorn(APPS["starlette"]))
    lines = [f"{'configuration':<28}{'processes':>10}{'RSS sum':>12}{'PSS sum':>12}"]
    for name, row in rows.items():
        if row.get("failure"):
            lines.append(f"{name:<28}  FAILED: {row['failure'].splitlines()[0][:80]}")
            continue
        lines.append(f"{name:<28}{row['processes']:>10}{row['rss'] / MB:>9.1f} MB"
                     f"{row['pss'] / MB:>9.1f} MB")
    lines += ["", f"MB per extra worker ((4 workers - 1) / 3):{'RSS':>14}{'PSS':>10}"]
    extra: dict = {}
    for app in APPS:
        for isolation in ISOLATIONS:
            rss, pss = (per_worker(rows, app, isolation, k) for k in ("rss", "pss"))
            extra[f"{app}-{isolation}"] = {"rss_mb": rss, "pss_mb": pss}
            lines.append(f"  {app + ' ' + isolation:<40}{fmt_num(rss, 1):>14}{fmt_num(pss, 1):>10}")
    targets = []
    for app in APPS:
        sub, proc = extra[f"{app}-subinterpreter"], extra[f"{app}-process"]
        rss = sub["rss_mb"]
        targets.append(target(
            f"{app}: extra subinterpreter worker <= {TARGET_MB_PER_WORKER:g} MB (RSS)",
            None if rss != rss else rss <= TARGET_MB_PER_WORKER,
            f"{fmt_num(rss, 1)} MB per worker",
        ))
        for key, what in (("rss_mb", "RSS"), ("pss_mb", "PSS")):
            s, p = sub[key], proc[key]
            targets.append(target(
                f"{app}: extra subinterpreter < extra process worker ({what})",
                None if s != s or p != p else s < p,
                f"{fmt_num(s, 1)} vs {fmt_num(p, 1)} MB ({fmt_ratio(ratio_value(s, p))})",
            ))
    lines += ["", *targets_text(targets)]
    plot_labels = [f"{app} {iso}" for app in APPS for iso in ISOLATIONS]
    return Scenario(
        key="memory",
        title="Memory per worker (no load; after 200 requests)",
        text="\n".join(lines),
        data={"rows": rows, "mb_per_extra_worker": extra, "targets": targets},
        failed=any(row.get("failure") for row in rows.values()),
        plot={"kind": "grouped", "title": "Memory: MB per extra worker",
              "ylabel": "MB per extra worker", "labels": plot_labels,
              "series": {"RSS sum": [extra[k.replace(" ", "-")]["rss_mb"] for k in plot_labels],
                         "PSS sum": [extra[k.replace(" ", "-")]["pss_mb"] for k in plot_labels]},
              "line": TARGET_MB_PER_WORKER},
    )
