"""The admin dashboard (``watt admin``) against one real runtime: a subinterpreter
entrypoint ``web`` that calls a process application ``api`` over the mesh.

First the JSON endpoints the page reads (``/stats``, ``/traces``, the log-level
action) and the listener's token, cookie and headers; then the page itself in
headless Chromium through Playwright (skipped, saying why, when Chromium or
Playwright is missing); ``watt admin --stop`` last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from support import ROOT, app_config, wait_for, watt_start

from watt.management.dashboard import group_traces, summarize

CHROMIUM = os.environ.get("WATT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _admin(xdg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watt.cli", "admin", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, XDG_RUNTIME_DIR=str(xdg)))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    config = folder / "watt.json"
    # A file exporter only: the dashboard adds the memory exporter it reads.
    config.write_text(json.dumps({
        "server": {"port": 0}, "entrypoint": "web",
        "telemetry": {"exporter": {"type": "file",
                                   "options": {"path": str(folder / "spans.jsonl")}}},
        "applications": [app_config("web"), app_config("api", isolation="process")]}))
    with watt_start(config) as (proc, xdg):
        url = proc.wait_url()
        answer = _admin(xdg)
        assert answer.returncode == 0, answer.stderr
        link = answer.stdout.strip()
        base, _, token = link.partition("/?token=")
        with httpx.Client(base_url=base, timeout=30,
                          headers={"authorization": f"Bearer {token}"}) as api:
            yield SimpleNamespace(url=url, link=link, base=base, token=token, api=api,
                                  xdg=xdg, proc=proc)


def _mesh_calls(url: str, count: int, request_id: str | None = None,
                target: str = "api.plt.local") -> None:
    headers = {"x-request-id": request_id} if request_id else {}
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            reply = client.get(url + "/mesh", params={"target": target},
                               headers=headers)
            assert reply.status_code == 200 and reply.json()["status"] == 200


# -- pure ------------------------------------------------------------------------------
def test_summarize_turns_snapshots_into_rows_and_edges():
    snapshots = [
        {"app": "web", "worker": 0, "isolation": "subinterpreter", "data": {
            "requests": [["GET", 200, 5, 0.5, []], ["GET", 503, 2, 0.1, []]],
            "quantiles": [0.001, 0.002, 0.01, 0.02, 0.03, 0.04, 0.05], "inFlight": 1,
            "elu": 0.25, "cpu": 1.5, "memory": None,
            "mesh": [["api", "GET", 200, 3, 0.03, []], ["api", "POST", 0, 1, 0.0, []],
                     ["db", "GET", 502, 2, 0.2, []]]}},
        {"app": "api", "worker": 1, "isolation": "process", "data": {"memory": 1024}}]
    workers, edges = summarize(snapshots)
    web, api = workers
    assert web == {"app": "web", "worker": 0, "isolation": "subinterpreter", "requests": 7,
                   "errors": 2, "durationSum": 0.6, "p50": 0.01, "p95": 0.03, "p99": 0.04,
                   "inFlight": 1, "elu": 0.25, "cpu": 1.5, "memory": None}
    assert api["requests"] == 0 and api["p50"] is None and api["memory"] == 1024
    assert edges == [
        {"source": "web", "target": "api", "requests": 4, "errors": 1, "durationSum": 0.03},
        {"source": "web", "target": "db", "requests": 2, "errors": 2, "durationSum": 0.2}]


def test_group_traces_latest_first_spans_by_start():
    def span(trace, span_id, parent, start, end, app, error=False):
        return {"traceId": trace, "spanId": span_id, "parentSpanId": parent, "name": "GET /",
                "kind": "SERVER", "startTimeUnixNano": start * 1_000_000,
                "endTimeUnixNano": end * 1_000_000, "status": {"code": "ERROR" if error
                                                               else "UNSET"},
                "resource": {"service.name": f"x-{app}", "watt.application": app}}

    spans = [span("t1", "b", "a", 12, 14, "api", error=True), span("t1", "a", "", 10, 20, "web"),
             span("t2", "c", None, 30, 31, "web")]
    latest, older = group_traces(spans, 5)
    assert latest["traceId"] == "t2" and older["traceId"] == "t1"
    assert [s["spanId"] for s in older["spans"]] == ["a", "b"]
    assert older["start"] == 10 and older["duration"] == 10
    assert older["spans"][0]["parentSpanId"] is None
    assert older["spans"][1] == {"spanId": "b", "parentSpanId": "a", "name": "GET /",
                                 "kind": "SERVER", "app": "api", "start": 12, "end": 14,
                                 "error": True}
    assert group_traces(spans, 1) == [latest]


# -- the listener ----------------------------------------------------------------------
def test_the_token_lets_a_browser_in_once_then_a_cookie_does(runtime):
    with httpx.Client(base_url=runtime.base, timeout=30) as anon:
        refused = anon.get("/api/v1/stats")
        assert refused.status_code == 401
        assert refused.json()["code"] == "WATT_MANAGEMENT_UNAUTHORIZED"
        assert anon.get("/").status_code == 401
        assert anon.get("/?token=not-it").status_code == 401
        entered = anon.get(runtime.link)
        assert entered.status_code == 303 and entered.headers["location"] == "/"
        cookie = entered.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = anon.get("/")  # the client kept the cookie
        assert page.status_code == 200 and "<title>Watt admin</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        script = anon.get("/static/app.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith(
            "text/javascript")
        head = anon.head("/static/app.js")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == script.headers["content-length"]
        assert anon.get("/static/../server.py").status_code == 404
        assert anon.get("/static/nothing.js").status_code == 404
        assert anon.get("/api/v1/applications").status_code == 200
        # A change made with the cookie alone (what another site could make a browser
        # send) is refused; the page's own header lets it through.
        body = {"level": "info"}
        forged = anon.put("/api/v1/applications/web/log-level", json=body)
        assert forged.status_code == 403
        assert anon.put("/api/v1/applications/web/log-level", json=body,
                        headers={"x-watt-dashboard": "1"}).status_code == 200


def test_asking_again_answers_the_same_dashboard_or_refuses_another_port(runtime):
    again = runtime.api.post("/api/v1/dashboard", json={})
    assert again.json() == {"enabled": True, "url": runtime.link}
    port = int(runtime.base.rsplit(":", 1)[1])
    other = runtime.api.post("/api/v1/dashboard", json={"port": port + 1 if port < 65535
                                                         else port - 1})
    assert other.status_code == 409 and other.json()["code"] == "WATT_DASHBOARD_UNAVAILABLE"
    bad = runtime.api.post("/api/v1/dashboard", json={"hostname": "example.com"})
    assert bad.status_code == 400 and "IP address" in bad.json()["message"]
    assert runtime.api.get("/api/v1/dashboard").json() == {"enabled": True,
                                                          "url": runtime.link}


# -- the JSON the page polls -----------------------------------------------------------
def test_stats_count_requests_and_mesh_calls(runtime):
    def snapshot():
        stats = runtime.api.get("/api/v1/stats").json()
        web = next(w for w in stats["workers"] if w["app"] == "web")
        edge = next((e for e in stats["mesh"] if e["source"] == "web"), None)
        return stats, web, edge

    _, web_before, edge_before = snapshot()
    _mesh_calls(runtime.url, 3)
    stats, web, edge = snapshot()
    assert web["requests"] == web_before["requests"] + 3
    assert edge["target"] == "api" and edge["errors"] == 0
    assert edge["requests"] == (edge_before["requests"] if edge_before else 0) + 3
    assert web["p50"] is not None and web["cpu"] > 0 and web["isolation"] == "subinterpreter"
    api = next(w for w in stats["workers"] if w["app"] == "api")
    assert api["memory"] > 0 and api["isolation"] == "process"
    assert stats["process"]["memory"] > 0


def test_traces_show_a_mesh_call_across_both_apps(runtime):
    _mesh_calls(runtime.url, 1)

    def mesh_trace():
        found = runtime.api.get("/api/v1/traces", params={"limit": 5}).json()
        assert found["enabled"] is True
        return next((t for t in found["traces"] if t["spans"][0]["name"] == "GET /mesh"
                     and len(t["spans"]) == 3), None)

    wait_for(lambda: mesh_trace() is not None, timeout=10)
    server, client, target = mesh_trace()["spans"]
    assert (server["app"], client["kind"], target["app"]) == ("web", "CLIENT", "api")
    assert client["parentSpanId"] == server["spanId"]
    assert target["parentSpanId"] == client["spanId"]
    assert runtime.api.get("/api/v1/traces", params={"limit": 0}).status_code == 400
    assert runtime.api.get("/api/v1/traces", params={"lmit": 1}).status_code == 400


def test_log_level_changes_at_once_and_for_restarted_workers(runtime):
    def messages(request_id: str, until: str = "GET /levels") -> list[str]:
        with httpx.Client(timeout=30) as client:
            assert client.get(runtime.url + "/levels",
                              headers={"x-request-id": request_id}).status_code == 200

        def logged() -> list[str]:
            text = runtime.api.get("/api/v1/logs", params={"app": "web", "lines": 500}).text
            return [r["msg"] for r in map(json.loads, text.splitlines())
                    if r.get("reqId") == request_id]

        wait_for(lambda: any(until in m for m in logged()), timeout=10)
        return logged()

    assert "stdlib debug" not in messages("lvl-before")
    answer = runtime.api.put("/api/v1/applications/web/log-level", json={"level": "debug"})
    assert answer.json() == {"id": "web", "level": "debug", "workers": 1}
    assert "stdlib debug" in messages("lvl-debug")
    runtime.api.put("/api/v1/applications/web/log-level", json={"level": "error"})
    runtime.api.post("/api/v1/applications/web/restart").raise_for_status()
    # The restarted worker kept "error": its error line comes, its warning line not.
    shown = messages("lvl-error", until="stdlib error")
    assert "stdlib warning" not in shown and "GET /levels 200" not in " ".join(shown)
    runtime.api.put("/api/v1/applications/web/log-level", json={"level": "info"})
    for bad in ({"level": "loud"}, {"level": "info", "x": 1}, ["info"]):
        refused = runtime.api.put("/api/v1/applications/web/log-level", json=bad)
        assert refused.status_code == 400
    assert runtime.api.put("/api/v1/applications/nope/log-level",
                           json={"level": "info"}).status_code == 404


# -- the page, in headless Chromium ----------------------------------------------------
@pytest.fixture
def browser_page(runtime):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; "
                    "scripts/system-deps does it for make test)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright "
                                   "(the test extra) to drive the page")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.set_default_timeout(10_000)
            yield page
            assert errors == []  # no script error, no refused resource, no CSP violation
        finally:
            browser.close()


def test_the_page_shows_apps_moves_charts_filters_logs_and_restarts(runtime, browser_page):
    page = browser_page
    page.goto(runtime.link)  # the token becomes a cookie; the address bar drops it
    assert page.url == runtime.base + "/"
    page.locator("tr[data-app=web]").wait_for()
    page.locator("tr[data-app=api]").wait_for()
    assert page.locator("tr[data-app=api] td").nth(1).inner_text() == "process"

    # Traffic moves the request-rate chart of web (the caption states its latest point).
    page.click("nav a[href='#charts']")
    rate = page.locator("[data-app=web] [data-latest=rate]")
    deadline = time.monotonic() + 10
    while not _rate_of(rate.inner_text()) > 0:
        assert time.monotonic() < deadline, "the request rate never moved"
        _mesh_calls(runtime.url, 5)
        page.wait_for_timeout(200)
    points = page.evaluate("document.querySelectorAll('[data-app=web] .uplot').length")
    assert points == 5  # requests, latency, ELU, CPU, memory

    # The log tail, filtered by one request's id: its lines in web and in api only.
    _mesh_calls(runtime.url, 1, request_id="e2e-request-1")
    page.click("nav a[href='#logs']")
    page.fill("#log-request", "e2e-request-1")
    rows = page.locator("#log-table tbody tr")
    page.wait_for_function("() => [...document.querySelectorAll('#log-table tbody tr')]"
                           ".filter(r => r.dataset.req === 'e2e-request-1').length >= 2")
    assert {rows.nth(i).get_attribute("data-req") for i in range(rows.count())} == {
        "e2e-request-1"}
    workers = {rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())}
    assert workers == {"web#0", "api#0"}

    # Restart from the page: api's worker is a new process.
    page.click("nav a[href='#applications']")
    worker = page.locator("tr[data-app=api] .worker-id")
    before = worker.inner_text()
    page.get_by_role("button", name="Restart api").click()
    page.wait_for_function("(old) => { const el = document.querySelector("
                           "'tr[data-app=api] .worker-id'); return el && el.textContent !== old"
                           " && el.textContent.startsWith('pid'); }", arg=before)
    assert page.locator("#status").inner_text() == "api restarted"

    # The log-level action, from the keyboard: the select keeps its focus across polls.
    level = page.get_by_label("Log level of web")
    level.focus()
    page.keyboard.press("ArrowDown")  # change… -> trace
    page.wait_for_function("() => document.querySelector('#status').textContent"
                           ".startsWith('web now logs from trace on')")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == \
        "Log level of web"
    runtime.api.put("/api/v1/applications/web/log-level", json={"level": "info"})

    # On a phone's width every view fits: nothing wider than the screen but the
    # tables, which scroll inside their own box.
    page.set_viewport_size({"width": 390, "height": 800})
    for view in ("applications", "charts", "mesh", "logs", "traces"):
        page.click(f"nav a[href='#{view}']")
        page.wait_for_function("() => document.documentElement.scrollWidth <= innerWidth")


def _rate_of(caption: str) -> float:
    return float(caption.rsplit(" ", 1)[-1]) if caption.strip() else 0.0


def test_admin_again_prints_the_same_url_then_stop_closes_the_listener(runtime):
    again = _admin(runtime.xdg)
    assert again.returncode == 0 and again.stdout.strip() == runtime.link, again.stderr
    answer = _admin(runtime.xdg, "--stop")
    assert answer.returncode == 0, answer.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(runtime.base + "/", timeout=5)
    socket = runtime.xdg / "watt" / f"{runtime.proc.proc.pid}.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://watt",
                      timeout=30) as unix:
        assert unix.get("/api/v1/dashboard").json() == {"enabled": False, "url": None}


# -- started by the config ---------------------------------------------------------------
def test_the_config_starts_it_and_traces_without_telemetry(tmp_path):
    """``dashboard`` in the config, no ``telemetry``: the link printed at start works and
    the traces view fills, from the dashboard's own memory only (no other exporter)."""
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "entrypoint": "web",
                                  "dashboard": {"hostname": "127.0.0.1", "sampleRatio": 1},
                                  "applications": [app_config("web")]}))
    with watt_start(config) as (proc, _):
        url = proc.wait_url()
        wait_for(lambda: any(line.startswith("Dashboard at ") for line in proc.stdout))
        link = next(line for line in proc.stdout if line.startswith("Dashboard at "))
        link = link.removeprefix("Dashboard at ").strip()
        base, _, token = link.partition("/?token=")
        with httpx.Client(base_url=base, timeout=30,
                          headers={"authorization": f"Bearer {token}"}) as api:
            assert api.get("/api/v1/dashboard").json() == {"enabled": True, "url": link}
            assert api.get("/api/v1/traces").json() == {"enabled": True, "traces": []}
            _mesh_calls(url, 1, target="web.plt.local")

            def mesh_trace():
                traces = api.get("/api/v1/traces").json()["traces"]
                return next((t for t in traces if len(t["spans"]) == 3), None)

            wait_for(lambda: mesh_trace() is not None, timeout=10)
            names = [(s["name"], s["kind"]) for s in mesh_trace()["spans"]]
            assert names == [("GET /mesh", "SERVER"), ("GET web", "CLIENT"),
                             ("GET /whoami", "SERVER")]


def test_the_dashboard_key_is_checked_and_traces_only_without_telemetry():
    from watt.config import load_config
    from watt.config_dashboard import dashboard_settings, dashboard_telemetry
    from watt.errors import ConfigError

    def load(**extra):
        return load_config({"entrypoint": "web", "applications": [app_config("web")], **extra})

    assert dashboard_settings(load()) is None
    on = dashboard_settings(load(dashboard=True))
    assert (on.hostname, on.port, on.sample_ratio) == ("127.0.0.1", 0, 1.0)
    tracing = dashboard_telemetry(dashboard_settings(load(dashboard={"sampleRatio": 0.25})),
                                  None)
    assert tracing.exporters() == [] and tracing.sample_ratio == 0.25
    configured = load(dashboard=True, telemetry={"sampleRatio": 0.5})
    assert dashboard_telemetry(dashboard_settings(configured), configured.telemetry) is \
        configured.telemetry
    for bad, key in (({"hostname": "example.com"}, "dashboard"), ({"port": 70000},
                                                                   "dashboard.port")):
        with pytest.raises(ConfigError) as info:
            load(dashboard=bad)
        assert info.value.key == key
    with pytest.raises(ConfigError) as info:
        dashboard_settings(load(dashboard=True, managementApi=False))
    assert info.value.code == "WATT_CONFIG_INVALID" and "managementApi" in str(info.value)


def test_a_runtime_without_the_management_api_starts_no_dashboard_and_records_nothing():
    """``Runtime(management=False)`` (the serverless adapter): a shared config's
    ``dashboard`` neither listens nor turns span recording on."""
    from watt.testing import RuntimeHandle

    config = {"entrypoint": "web", "dashboard": True, "applications": [app_config("web")]}
    with RuntimeHandle(config, management=False) as rt:
        assert rt.runtime.management is None and rt.runtime.tracing is None
        assert rt.inject("web", "GET", "/whoami").status == 200
