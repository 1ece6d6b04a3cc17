"""Entrypoint scenario: Watt's front door against the usual ASGI servers, same trivial app.

The issue's target: entrypoint throughput at least the same app under uvicorn (1
process), and with 2 workers at least uvicorn ``--workers 2``. By default the main
interpreter only accepts connections and the app's workers serve them (direct mode,
``watt/http1_direct.py``); with ``server.direct: false`` or another engine every
request crosses the main interpreter's loop (engine -> channel -> worker -> back).
The servers run one after the other with the same load, and the report's headline
is the ratios of each Watt row to each baseline:

- ``watt-1``, ``watt-2``: ``watt start`` with 1 and 2 workers of the app, engine
  ``auto`` (Watt's own HTTP/1.1 engine), connections served in the workers;
- ``watt-1-forwarded``: 1 worker, ``server.direct: false`` (every request forwarded
  through the main loop: ``watt/http1.py``);
- ``watt-1-granian``: the same with ``server.engine: granian`` (embedded);
- ``watt-1-hypercorn``: the same with ``server.engine: hypercorn``;
- ``uvicorn``, ``uvicorn-w2``: 1 process and ``--workers 2`` (httptools + uvloop when
  installed, as ``uvicorn[standard]`` gives; the header says which);
- ``gunicorn-uvicorn-w2``: Gunicorn with 2 uvicorn workers;
- ``hypercorn``: 1 process; ``granian``: 1 process (its own Rust server).

Run it alone with ``python benchmarks/run.py --only entrypoint [--quick]``.
"""

from __future__ import annotations

import sys

from harness import BENCH_DIR
from suite import (
    PY,
    Measured,
    Scenario,
    Settings,
    fmt_num,
    fmt_ratio,
    have,
    load_table,
    measure,
    port_spec,
    ratio_matrix,
    ratio_value,
    target,
    targets_text,
    uvicorn_flavour,
    version,
    watt_spec,
)

APP_DIR = BENCH_DIR / "apps" / "trivial"
CONFIG = APP_DIR / "watt.json"
CONFIG_HYPERCORN = APP_DIR / "watt-hypercorn.json"
CONFIG_GRANIAN = APP_DIR / "watt-granian.json"
CONFIG_FORWARDED = APP_DIR / "watt-forwarded.json"
SUBJECTS = ["watt-1", "watt-2", "watt-1-forwarded", "watt-1-granian", "watt-1-hypercorn"]
BASELINES = ["uvicorn", "uvicorn-w2", "gunicorn-uvicorn-w2", "hypercorn", "granian"]


def _uvicorn(workers: int):
    def argv(port: int) -> list[str]:
        extra = ["--workers", str(workers)] if workers > 1 else []
        return [PY, "-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning",
                *extra]
    return argv


def _gunicorn(port: int) -> list[str]:
    worker = "uvicorn_worker.UvicornWorker" if have("uvicorn_worker") else (
        "uvicorn.workers.UvicornWorker")
    return [PY, "-m", "gunicorn", "-w", "2", "-k", worker, "-b", f"127.0.0.1:{port}",
            "--log-level", "warning", "app:app"]


def _hypercorn(port: int) -> list[str]:
    return [PY, "-m", "hypercorn", "-b", f"127.0.0.1:{port}", "app:app"]


def _granian(port: int) -> list[str]:
    return [PY, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port",
            str(port), "--workers", "1", "--log-level", "warning", "app:app"]


def servers() -> list[tuple[object, str]]:
    """(spec maker, what it is), in the order they run; a missing server is skipped."""
    out: list[tuple[object, str]] = [
        (lambda: watt_spec("watt-1", CONFIG, "--workers", "1"),
         "Watt, 1 subinterpreter worker, engine auto (watt: served in the worker)"),
        (lambda: watt_spec("watt-2", CONFIG, "--workers", "2"),
         "Watt, 2 subinterpreter workers, engine auto"),
        (lambda: watt_spec("watt-1-forwarded", CONFIG_FORWARDED, "--workers", "1"),
         "Watt, 1 worker, server.direct false (httptools on the main loop, forwarded)"),
        (lambda: watt_spec("watt-1-granian", CONFIG_GRANIAN, "--workers", "1"),
         "Watt, 1 worker, server.engine granian (embedded)"),
        (lambda: watt_spec("watt-1-hypercorn", CONFIG_HYPERCORN, "--workers", "1"),
         "Watt, 1 worker, server.engine hypercorn"),
        (lambda: port_spec("uvicorn", _uvicorn(1), APP_DIR), "uvicorn, 1 process"),
        (lambda: port_spec("uvicorn-w2", _uvicorn(2), APP_DIR), "uvicorn --workers 2"),
    ]
    if have("gunicorn"):
        out.append((lambda: port_spec("gunicorn-uvicorn-w2", _gunicorn, APP_DIR),
                    "Gunicorn, 2 uvicorn workers"))
    out.append((lambda: port_spec("hypercorn", _hypercorn, APP_DIR), "hypercorn, 1 process"))
    if have("granian"):
        out.append((lambda: port_spec("granian", _granian, APP_DIR),
                    "granian, 1 process (Rust HTTP, its own server)"))
    return out


def scenario(settings: Settings) -> Scenario:
    load = settings.load()
    rows: list[Measured] = []
    for make, label in servers():
        rows.append(measure(make(), load, "/", label))  # type: ignore[operator]
    by = {r.name: r for r in rows}
    missing = [n for n in ("gunicorn",) if not have(n)]
    lines = [
        f"servers: {uvicorn_flavour()}; gunicorn {version('gunicorn')}; hypercorn "
        f"{version('hypercorn')}; granian {version('granian')}"
        + (f"; skipped (not installed): {', '.join(missing)} (pip install -e '.[bench]')"
           if missing else ""),
        *load_table(rows),
        "",
    ]
    matrix, ratios = ratio_matrix(rows, SUBJECTS, BASELINES)
    lines += matrix
    targets = []
    for subject, baseline, text in (
        ("watt-1", "uvicorn", "watt 1 worker >= uvicorn 1 process (requests/s)"),
        ("watt-2", "uvicorn-w2", "watt 2 workers >= uvicorn --workers 2 (requests/s)"),
    ):
        s, b = by.get(subject), by.get(baseline)
        value = ratio_value(s.rps, b.rps) if s and b else float("nan")
        ok = None if value != value else value >= 1.0
        targets.append(target(
            text, ok,
            f"{fmt_num(s.rps if s else float('nan'))} vs {fmt_num(b.rps if b else float('nan'))}"
            f" requests/s ({fmt_ratio(value)})",
            bool(s and s.suspect() or b and b.suspect()),
        ))
    lines += ["", *targets_text(targets)]
    return Scenario(
        key="entrypoint",
        title="Entrypoint, trivial ASGI app (GET /)",
        text="\n".join(lines),
        data={
            "load": {"connections": load.connections, "duration_s": load.duration_s,
                     "warmup_s": load.warmup_s},
            "servers": {"uvicorn": uvicorn_flavour(), "gunicorn": version("gunicorn"),
                        "hypercorn": version("hypercorn"), "granian": version("granian")},
            "rows": [r.to_json() for r in rows],
            "ratios": ratios,
            "targets": targets,
        },
        failed=any(r.result is None for r in rows),
        plot={
            "kind": "bar",
            "title": f"Entrypoint, trivial app, c={load.connections}",
            "ylabel": "requests/s",
            "labels": [r.name for r in rows],
            "values": [r.rps for r in rows],
            "subjects": SUBJECTS,
        },
    )


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "entrypoint", *sys.argv[1:]]))
