"""Realistic scenario: a Django site and a Flask app through Watt and under Gunicorn.

Both apps (``benchmarks/apps/realistic``) render the same catalogue page of 20 items
from a template on ``GET /``: URL routing, a request object, middleware (Django),
template rendering, a response — the per-request work of a typical server-rendered
page, without a database. Each runs:

- ``watt``: ``watt start`` with 2 workers (WSGI bridge, subinterpreters, 10 threads
  each, the default); the Django site has no ``asgi.py``, so Watt runs it over WSGI
  like Gunicorn does;
- ``gunicorn-sync``: ``gunicorn -w 2`` with its default sync workers, the way these
  apps are most often deployed (sync workers close the connection after each
  response, so the load generator reconnects every time: that is part of what
  Gunicorn costs when nothing sits in front of it).
"""

from __future__ import annotations

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
    ratio_value,
    target,
    targets_text,
    version,
    watt_spec,
)

APPS_DIR = BENCH_DIR / "apps" / "realistic"
SITES = {
    "django": (APPS_DIR / "django_site", "shop.wsgi:application"),
    "flask": (APPS_DIR / "flask_site", "app:app"),
}
WORKERS = 2


def _gunicorn(module: str):
    def argv(port: int) -> list[str]:
        return [PY, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
                "--log-level", "warning", module]
    return argv


def scenario(settings: Settings) -> Scenario:
    load = settings.load()
    rows: list[Measured] = []
    for site, (folder, module) in SITES.items():
        rows.append(measure(watt_spec(f"{site}-watt", folder / "watt.json", "--workers",
                                      str(WORKERS)), load, "/",
                            f"Watt, {WORKERS} subinterpreter workers, WSGI bridge"))
        if have("gunicorn"):
            rows.append(measure(port_spec(f"{site}-gunicorn-sync", _gunicorn(module), folder),
                                load, "/", f"Gunicorn {WORKERS} sync workers"))
    by = {r.name: r for r in rows}
    lines = [
        f"Django {version('django')}, Flask {version('flask')}, gunicorn {version('gunicorn')}"
        + ("" if have("gunicorn") else " (pip install -e '.[bench]' for the baseline)"),
        *load_table(rows),
        "",
    ]
    targets = []
    ratios = {}
    for site in SITES:
        w, g = by.get(f"{site}-watt"), by.get(f"{site}-gunicorn-sync")
        rps = ratio_value(w.rps, g.rps) if w and g else float("nan")
        p50 = (ratio_value(w.result.p50_us, g.result.p50_us)
               if w and g and w.result and g.result else float("nan"))
        ratios[site] = {"rps": None if rps != rps else round(rps, 3),
                        "p50": None if p50 != p50 else round(p50, 3)}
        lines.append(f"{site}: watt / gunicorn sync  requests/s {fmt_ratio(rps)} (higher is "
                     f"better), p50 {fmt_ratio(p50)} (lower is better)")
        targets.append(target(
            f"{site} through Watt >= under Gunicorn ({WORKERS} workers each)",
            None if rps != rps else rps >= 1.0,
            f"{fmt_num(w.rps if w else float('nan'))} vs "
            f"{fmt_num(g.rps if g else float('nan'))} requests/s ({fmt_ratio(rps)})",
            bool(w and w.suspect() or g and g.suspect()),
        ))
    lines += ["", *targets_text(targets)]
    return Scenario(
        key="realistic",
        title="Realistic, Django and Flask catalogue page",
        text="\n".join(lines),
        data={"load": {"connections": load.connections, "duration_s": load.duration_s},
              "rows": [r.to_json() for r in rows], "ratios": ratios, "targets": targets},
        failed=any(r.result is None for r in rows),
        plot={"kind": "bar", "title": f"Django / Flask page, c={load.connections}",
              "ylabel": "requests/s", "labels": [r.name for r in rows],
              "values": [r.rps for r in rows],
              "subjects": [f"{site}-watt" for site in SITES]},
    )
