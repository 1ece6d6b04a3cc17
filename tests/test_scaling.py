"""Dynamic workers (``workers: {min, max}``) and the application's readiness and
liveness checks (``applications[].health``)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from support import app_config, wait_for

from watt.config import load_config
from watt.errors import ConfigError
from watt.supervision import HealthCheck, Scaler

FAST = {"interval": 100, "gracePeriod": 0, "maxUnhealthyChecks": 3}


def _app(rt, app_id: str) -> dict:
    return next(a for a in rt.applications() if a["id"] == app_id)


# -- the rules, with numbers ------------------------------------------------------------
def test_scaler_needs_checks_in_a_row_and_stays_within_bounds():
    scaler = Scaler(minimum=1, maximum=3, up_elu=0.8, down_elu=0.2, checks=3)
    assert [scaler.decide([0.9], 1) for _ in range(3)] == [0, 0, 1]
    # The count started over: three more busy checks for the next worker.
    assert [scaler.decide([0.95, 0.9], 2) for _ in range(3)] == [0, 0, 1]
    assert [scaler.decide([0.9, 0.9, 0.9], 3) for _ in range(5)] == [0] * 5  # at max
    # An average in between breaks a series.
    assert [scaler.decide(e, 3) for e in ([0.1] * 3, [0.5] * 3, [0.1] * 3, [0.1] * 3)] == [
        0, 0, 0, 0]
    assert scaler.decide([0.1, 0.0, 0.05], 3) == -1  # third low check in a row
    assert [scaler.decide([0.0], 1) for _ in range(5)] == [0] * 5  # at min
    assert scaler.decide([], 1) == 0  # nothing measured yet: no opinion
    with pytest.raises(ValueError, match="min 3"):
        Scaler(minimum=3, maximum=2, up_elu=0.8, down_elu=0.2, checks=1)


def test_scaler_averages_the_workers():
    scaler = Scaler(minimum=1, maximum=4, up_elu=0.6, down_elu=0.2, checks=1)
    assert scaler.decide([1.0, 0.1], 2) == 0  # average 0.55
    assert scaler.decide([1.0, 0.3], 2) == 1  # average 0.65


def test_liveness_counts_as_unhealthy_and_readiness_only_stops_routing():
    check = HealthCheck(interval=1.0, grace=0.0, max_elu=0.9, max_memory=0, max_unhealthy=2)
    check.report(100, -1, 1.0, ready=0, live=1)
    assert check.serving is False and check.check(1.1, 0.0) is None and check.unhealthy == 0
    check.report(100, -1, 2.0, ready=1, live=0)
    assert check.serving is True
    assert check.check(2.1, 0.0) is None and check.check(2.2, 0.0) == (
        "the application's liveness check failed")
    check.report(100, -1, 3.0, ready=None, live=None)  # no checks declared
    assert check.serving is True and check.reason(3.1, 0.0) is None


# -- the config --------------------------------------------------------------------------
def test_workers_min_max_and_health_checks_in_the_config(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = load_config({"workers": {"min": 2, "max": 4}, "applications": [
        {"id": "a", "path": str(tmp_path / "a"), "workers": {"max": 3, "scaleUpELU": 0.7},
         "health": {"ready": "main:ready", "live": "checks.probe:live"}},
        {"id": "b", "path": str(tmp_path / "b")}], "entrypoint": "a"})
    a, b = config.applications
    assert (a.workers.minimum, a.workers.maximum, a.workers.scale_up_elu,
            a.workers.scale_down_elu, a.workers.scale_checks) == (1, 3, 0.7, 0.2, 3)
    assert (b.workers.minimum, b.workers.maximum) == (2, 4)  # the top-level range
    assert (a.health.ready, a.health.live, b.health.ready) == (
        "main:ready", "checks.probe:live", None)


@pytest.mark.parametrize(("raw", "code", "key"), [
    ({"workers": {"min": 3, "max": 2}}, "WATT_CONFIG_INVALID", "applications[0].workers"),
    ({"workers": {"min": 1}}, "WATT_CONFIG_MISSING_KEY", "applications[0].workers.max"),
    ({"workers": {"max": 2, "scaleUp": 0.5}}, "WATT_CONFIG_UNKNOWN_KEY",
     "applications[0].workers.scaleUp"),
    ({"workers": {"max": 0}}, "WATT_CONFIG_INVALID_TYPE", "applications[0].workers.max"),
    ({"health": {"ready": "main"}}, "WATT_CONFIG_INVALID_TYPE", "applications[0].health.ready"),
    ({"health": {"alive": "main:live"}}, "WATT_CONFIG_UNKNOWN_KEY",
     "applications[0].health.alive"),
])
def test_bad_workers_and_health_config(tmp_path, raw, code, key):
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config({"applications": [{"id": "a", "path": str(tmp_path / "a"), **raw}]})
    assert (info.value.code, info.value.key) == (code, key)


def test_top_level_min_larger_than_max_names_the_top_level_key(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config({"workers": {"min": 5, "max": 2},
                     "applications": [{"id": "a", "path": str(tmp_path / "a")}]})
    assert (info.value.code, info.value.key) == ("WATT_CONFIG_INVALID", "workers")


# -- real workers ------------------------------------------------------------------------
class _Load:
    """Threads sending requests to ``url + path`` until stopped; every status kept."""

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        self.path = "/spin?ms=20"

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    self.statuses.append(client.get(self.url + self.path).status_code)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def test_busy_app_scales_up_to_max_then_down_when_idle_without_failing_a_request(watt_runtime):
    rt = watt_runtime({"health": dict(FAST, maxELU=1, maxUnhealthyChecks=1000),
                       "applications": [app_config("s", "scaling", workers={
                           "min": 1, "max": 2, "scaleChecks": 3})]})
    assert len(_app(rt, "s")["workers"]) == 1 and _app(rt, "s")["scaling"] == {"min": 1,
                                                                                "max": 2}
    quiet = _Load(rt.url, 2)
    quiet.path = "/idle?ms=100"  # requests all along, through the scale-down's drain
    with quiet:
        with _Load(rt.url, 3) as busy:
            wait_for(lambda: len(_app(rt, "s")["workers"]) == 2
                     and all(w["status"] == "ready" for w in _app(rt, "s")["workers"]))
            count = len(busy.statuses)
            wait_for(lambda: len(busy.statuses) > count + 20)  # served by both workers now
            assert len(_app(rt, "s")["workers"]) == 2  # at max: no third
        assert busy.statuses and set(busy.statuses) == {200} and not busy.errors
        wait_for(lambda: len(_app(rt, "s")["workers"]) == 1)
        count = len(quiet.statuses)
        wait_for(lambda: len(quiet.statuses) > count + 5)
    assert set(quiet.statuses) == {200} and not quiet.errors
    messages = [line["msg"] for line in rt.logs()]
    assert any("scaled up to 2 worker(s)" in m for m in messages)
    assert any("scaled down to 1 worker(s)" in m for m in messages)
    assert len(_app(rt, "s")["workers"]) == 1 and rt.inject("s", "GET", "/whoami").status == 200


def test_a_worker_whose_readiness_check_fails_gets_no_requests(watt_runtime):
    rt = watt_runtime({"health": FAST, "metrics": {"enabled": True, "port": 0},
                       "applications": [app_config("s", "scaling", workers=2, health={
                           "ready": "main:ready", "live": "main:live"})]})
    probes = rt.runtime.metrics_url
    first = rt.inject("s", "GET", "/set").json()["interpreter"]
    rt.inject("s", "GET", "/set?ready=0")  # round robin: the other worker
    wait_for(lambda: [w["serving"] for w in _app(rt, "s")["workers"]].count(False) == 1)
    served = {rt.inject("s", "GET", "/whoami").json()["interpreter"] for _ in range(6)}
    assert served == {first}
    ready = httpx.get(probes + "/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["readyWorkers"] == {"s": 1}
    rt.inject("s", "GET", "/set?ready=0")  # now the last serving one says not ready
    wait_for(lambda: not any(w["serving"] for w in _app(rt, "s")["workers"]))
    assert rt.inject("s", "GET", "/whoami").status == 503
    ready = httpx.get(probes + "/ready", timeout=30)
    assert ready.status_code == 503 and ready.json()["notReady"] == ["s"]
    assert _app(rt, "s")["restarts"] == 0  # not ready is not unhealthy


@pytest.mark.parametrize("isolation", ["subinterpreter", "process"])
def test_a_worker_whose_liveness_check_fails_is_replaced(watt_runtime, isolation):
    rt = watt_runtime({"health": FAST, "applications": [app_config(
        "s", "scaling", isolation=isolation, health={"live": "main:live"})]})
    before = rt.inject("s", "GET", "/set?live=0").json()
    wait_for(lambda: _app(rt, "s")["restarts"] == 1
             and _app(rt, "s")["workers"][0]["status"] == "ready")
    after = rt.inject("s", "GET", "/whoami").json()
    assert after["live"] is True and (after["pid"], after["interpreter"]) != (
        before["pid"], before["interpreter"])


def test_a_check_that_raises_counts_as_false_and_is_logged(watt_runtime):
    rt = watt_runtime({"health": FAST, "applications": [app_config(
        "s", "scaling", health={"ready": "main:broken"})]})
    wait_for(lambda: not _app(rt, "s")["workers"][0]["serving"])
    assert rt.inject("s", "GET", "/whoami").status == 503
    wait_for(lambda: any("the database is gone" in line.get("msg", "") for line in rt.logs()))


def test_a_check_that_does_not_exist_fails_the_start_with_a_code(watt_runtime):
    from watt.errors import WattError

    with pytest.raises(WattError) as info:
        watt_runtime({"health": FAST, "applications": [app_config(
            "s", "scaling", health={"live": "main:nowhere"})]})
    assert info.value.code == "WATT_APP_IMPORT_FAILED" and "main:nowhere" in str(info.value)


def test_scale_down_takes_the_worker_out_of_routing_then_drains_its_requests(watt_runtime):
    import concurrent.futures

    # Forwarded requests (server.direct false): the pool's in-flight count is the
    # main side's; test_direct covers a leaving worker's connections in direct mode.
    rt = watt_runtime({"health": {"enabled": False}, "server": {"direct": False},
                       "applications": [app_config("s", "scaling", workers=2)]})
    pool = rt.runtime.pools["s"]
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        slow = [executor.submit(httpx.get, rt.url + "/idle?ms=1500", timeout=30)
                for _ in range(4)]  # round robin: two in flight on each worker
        wait_for(lambda: pool.in_flight == 4)
        leaving = max(w.index for w in pool.workers)
        step = asyncio.run_coroutine_threadsafe(pool.scale_down(), rt._loop)
        wait_for(lambda: len(pool.workers) == 1)  # out of routing at once ...
        staying = pool.workers[0].interpreter_id
        assert {rt.inject("s", "GET", "/whoami").json()["interpreter"]
                for _ in range(3)} == {staying}
        assert not step.done()  # ... while it still finishes its two requests
        step.result(30)
        replies = [f.result() for f in slow]
    assert [r.status_code for r in replies] == [200] * 4
    assert len({r.json()["interpreter"] for r in replies}) == 2  # both workers answered
    assert [w.index for w in pool.workers] != [leaving]
