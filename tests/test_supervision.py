"""Restarts: a worker that dies comes back after a backoff; the others keep serving."""

from __future__ import annotations

import os

import httpx
import pytest
from support import app_config, wait_for

from watt.supervision import MAX_BACKOFF_MS, STABLE_AFTER_S, RestartPolicy


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run():
    policy = RestartPolicy(100)
    assert [policy.delay_ms(0, 1.0) for _ in range(4)] == [100, 200, 400, 800]
    assert policy.delay_ms(1, 1.0) == 100  # slots are independent
    assert policy.delay_ms(0, STABLE_AFTER_S) == 100  # it had been stable: start over
    for _ in range(20):
        delay = policy.failed_start(0)
    assert delay == MAX_BACKOFF_MS


@pytest.mark.parametrize(("value", "first"), [(True, 1000), (0, 0), (250, 250), (False, None)])
def test_restart_on_error_values(value, first):
    policy = RestartPolicy(value)
    assert policy.delay_ms(0, 0.0) == first
    assert policy.enabled is (first is not None)



def _workers(rt, app_id):
    return next(a for a in rt.applications() if a["id"] == app_id)


@pytest.mark.parametrize("isolation", ["process", "subinterpreter"])
def test_a_dead_worker_is_restarted_and_the_app_answers_again(watt_runtime, isolation):
    route = "/crash" if isolation == "process" else "/die"
    rt = watt_runtime({"entrypoint": "front", "restartOnError": 50, "applications": [
        app_config("front"), app_config("svc", isolation=isolation)]})
    before = rt.inject("svc", "GET", "/whoami").json()
    died = rt.inject("svc", "GET", route)
    assert died.status in (500, 502)
    assert httpx.get(rt.url + "/whoami", timeout=30).status_code == 200  # others serve
    wait_for(lambda: _workers(rt, "svc")["restarts"] == 1
             and _workers(rt, "svc")["workers"][0]["status"] == "ready")
    after = rt.inject("svc", "GET", "/whoami").json()
    if isolation == "process":
        assert after["pid"] != before["pid"] and after["pid"] != os.getpid()
    else:
        assert after["interpreter"] != before["interpreter"]
    # The mesh reaches the new worker too.
    reply = httpx.get(rt.url + "/fetch", params={"target": "svc.plt.local"}, timeout=30).json()
    assert reply["status"] == 200


def test_restart_on_error_false_leaves_the_worker_down(watt_runtime):
    rt = watt_runtime({"applications": [
        app_config("p", isolation="process", restartOnError=False)]})
    assert rt.inject("p", "GET", "/crash").status == 502
    # Its channel fails at once; the process's exit status follows a moment later.
    wait_for(lambda: _workers(rt, "p")["workers"][0]["status"] == "dead")
    assert _workers(rt, "p")["restarts"] == 0
    assert rt.inject("p", "GET", "/whoami").status == 503


def test_with_two_workers_only_the_dead_one_is_replaced(watt_runtime):
    rt = watt_runtime({"restartOnError": 0, "applications": [
        app_config("p", isolation="process", workers=2)]})
    pids = {rt.inject("p", "GET", "/whoami").json()["pid"] for _ in range(2)}
    assert len(pids) == 2
    assert rt.inject("p", "GET", "/crash").status == 502
    wait_for(lambda: _workers(rt, "p")["restarts"] == 1
             and all(w["status"] == "ready" for w in _workers(rt, "p")["workers"]))
    now = {rt.inject("p", "GET", "/whoami").json()["pid"] for _ in range(2)}
    assert len(now) == 2 and len(now & pids) == 1


@pytest.mark.parametrize("engine", ["watt", "granian", "hypercorn"])
def test_sigterm_lets_in_flight_requests_finish_then_exits_0(tmp_path, engine):
    import concurrent.futures
    import json
    import signal

    from support import APPS, WattProcess

    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0, "engine": engine}, "applications": [
        {"id": "a", "path": str(APPS / "basic"), "app": "main:app"}]}))
    proc = WattProcess("-c", str(config))
    try:
        url = proc.wait_url()
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            slow = [pool.submit(httpx.get, url + "/slow", params={"delay": "1.5"}, timeout=30)
                    for _ in range(30)]
            wait_for(lambda: httpx.get(url + "/in-flight", timeout=30).json()["in_flight"] == 30)
            proc.proc.send_signal(signal.SIGTERM)
            statuses = [f.result().status_code for f in slow]
        assert statuses == [200] * 30
        assert proc.wait() == 0
    finally:
        proc.kill()


def test_rolling_restart_fails_no_request(watt_runtime):
    import threading

    rt = watt_runtime({"applications": [app_config("a", workers=2)]})
    before = {w["interpreter"] for w in _workers(rt, "a")["workers"]}
    statuses: list[int] = []
    done = threading.Event()

    def load():
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                statuses.append(client.get(rt.url + "/whoami").status_code)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_for(lambda: len(statuses) > 5)
        rt._call(rt.runtime.restart("a"))
        wait_for(lambda: len(statuses) > 10)
    finally:
        done.set()
        thread.join(30)
    after = {w["interpreter"] for w in _workers(rt, "a")["workers"]}
    assert not before & after and len(after) == 2
    assert set(statuses) == {200}


def test_health_check_counts_consecutive_unhealthy_checks():
    from watt.supervision import HealthCheck

    check = HealthCheck(interval=1.0, grace=5.0, max_elu=0.9, max_memory=1000,
                        max_unhealthy=3)
    check.report(950, 10, now=1.0)
    assert check.check(now=2.0, ready_at=0.0) is None  # still in its grace period
    assert [check.check(now=t, ready_at=-10.0) for t in (2.0, 2.5)] == [None, None]
    check.report(100, 10, now=2.6)  # healthy again: the count starts over
    assert check.check(now=3.0, ready_at=-10.0) is None and check.unhealthy == 0
    check.report(100, 5000, now=3.1)
    assert [check.check(now=t, ready_at=-10.0) is not None for t in (3.2, 3.3, 3.4)] == [
        False, False, True]
    silent = HealthCheck(interval=1.0, grace=0.0, max_elu=0.9, max_memory=0, max_unhealthy=1)
    silent.report(0, -1, now=0.0)
    assert silent.check(now=1.5, ready_at=0.0) is None
    assert "no health report" in silent.check(now=2.5, ready_at=0.0)


FAST_HEALTH = {"interval": 100, "gracePeriod": 0, "maxUnhealthyChecks": 2}


def test_a_worker_over_max_memory_is_replaced(watt_runtime):
    rt = watt_runtime({"health": dict(FAST_HEALTH, maxMemory=300 * 1024 * 1024),
                       "applications": [app_config("p", isolation="process")]})
    before = rt.inject("p", "GET", "/whoami").json()["pid"]
    assert rt.inject("p", "GET", "/leak?mb=400").status == 200
    wait_for(lambda: _workers(rt, "p")["restarts"] == 1)
    after = rt.inject("p", "GET", "/whoami").json()["pid"]
    assert after != before


def test_a_worker_whose_loop_blocks_forever_is_replaced_and_others_keep_answering(
        watt_runtime):
    import concurrent.futures

    rt = watt_runtime({"health": FAST_HEALTH, "entrypoint": "front", "applications": [
        app_config("front"), app_config("p", isolation="process")]})
    before = rt.inject("p", "GET", "/whoami").json()["pid"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(rt.inject, "p", "GET", "/block-forever")
        wait_for(lambda: _workers(rt, "p")["restarts"] == 1)
        assert httpx.get(rt.url + "/whoami", timeout=30).status_code == 200
        assert stuck.result(timeout=30).status == 502  # the one request it held
    assert rt.inject("p", "GET", "/whoami").json()["pid"] != before
