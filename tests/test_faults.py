"""Fault injection: real workers killed under load, real signals to ``watt start``.

Each test counts failed requests exactly: only those in flight to the faulty worker
may fail, and the runtime keeps answering. (Start-up failures, a blocked event loop
and a leak past ``maxMemory`` are in test_startup.py and test_supervision.py.)
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import threading
from urllib.parse import urlsplit

import httpx
from support import APPS, WattProcess, app_config, wait_for


def _pool(rt, app_id: str) -> dict:
    return next(a for a in rt.applications() if a["id"] == app_id)


def _held(folder) -> dict[str, int]:
    """Request id -> pid of the worker holding it (files written by /hold)."""
    held = {}
    for entry in os.listdir(folder):
        if entry.endswith(".held"):
            pid, _, request = entry.removesuffix(".held").partition("-")
            held[request] = int(pid)
    return held


def test_kill_9_of_a_process_worker_under_load_fails_only_its_in_flight_requests(
        watt_runtime, tmp_path):
    clients, per_client = 8, 20
    rt = watt_runtime({"restartOnError": 300, "applications": [
        app_config("p", isolation="process", workers=2)]})
    before = {w["pid"] for w in _pool(rt, "p")["workers"]}
    results: dict[str, tuple[int, dict]] = {}

    def client(n: int) -> None:
        # One request at a time per client: a client sends its next request only once
        # the previous one answered, so none is sent to the victim after its death.
        with httpx.Client(timeout=30) as http:
            for k in range(per_client):
                request = f"{n}.{k}"
                reply = http.get(rt.url + "/hold", params={"dir": str(tmp_path), "id": request})
                results[request] = (reply.status_code, reply.json())

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        # Every client's first request is held by a worker: what is in flight is known.
        wait_for(lambda: len(_held(tmp_path)) == clients)
        held = _held(tmp_path)
        assert set(held.values()) == before  # round robin used both workers
        victim = held["0.0"]
        on_victim = {request for request, pid in held.items() if pid == victim}
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: on_victim <= results.keys())  # the victim's requests failed at once
        assert not results.keys() & (held.keys() - on_victim)  # the survivor's are held
        (tmp_path / "release").touch()
    finally:
        (tmp_path / "release").touch()
        for thread in threads:
            thread.join(60)
    assert len(results) == clients * per_client
    failed = {request for request, (status, _) in results.items() if status != 200}
    assert failed == on_victim
    assert {results[r][1]["code"] for r in failed} == {"WATT_WORKER_DIED"}
    survivor = (before - {victim}).pop()
    answered = {body["pid"] for status, body in results.values() if status == 200}
    assert survivor in answered and victim not in answered
    # The victim comes back (one restart), and both workers answer again.
    wait_for(lambda: _pool(rt, "p")["restarts"] == 1
             and all(w["status"] == "ready" for w in _pool(rt, "p")["workers"]))
    after = {w["pid"] for w in _pool(rt, "p")["workers"]}
    assert survivor in after and victim not in after and len(after) == 2
    with httpx.Client(timeout=30) as http:
        pids = {http.get(rt.url + "/whoami").json()["pid"] for _ in range(4)}
    assert pids == after


def _refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_with_50_slow_requests_in_flight_finishes_them_all_and_refuses_new_ones(
        tmp_path):
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "applications": [
        {"id": "a", "path": str(APPS / "basic"), "app": "main:app"}]}))
    proc = WattProcess("-c", str(config))
    try:
        url = proc.wait_url()
        host, port = urlsplit(url).hostname, urlsplit(url).port
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            # Held by the app until the test releases them: on a busy machine the 50
            # may take any time to arrive, and none ends before it is told to.
            slow = [pool.submit(httpx.get, url + "/hold",
                                params={"dir": str(tmp_path), "id": str(i)}, timeout=60)
                    for i in range(50)]
            wait_for(lambda: len(list(tmp_path.glob("*.held"))) == 50)
            proc.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: _refuses(host, port))
            # Refused while the 50 were still being answered, not after.
            assert not any(f.done() for f in slow)
            (tmp_path / "release").touch()
            statuses = [f.result().status_code for f in slow]
        assert statuses == [200] * 50
        assert proc.wait() == 0
    finally:
        proc.kill()



def test_a_worker_replaced_for_memory_under_load_fails_no_request(watt_runtime):
    # test_supervision.py proves the replacement; here, that under a steady load the
    # hand-over loses nothing: the new worker is ready before the old one drains.
    rt = watt_runtime({"health": {"interval": 100, "gracePeriod": 0, "maxUnhealthyChecks": 2,
                                  "maxMemory": 200 * 1024 * 1024},
                       "applications": [app_config("p", isolation="process", workers=2)]})
    before = {w["pid"] for w in _pool(rt, "p")["workers"]}
    statuses: list[int] = []
    stop_after: list[int] = []  # set once the worker was replaced

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(2000):  # bounded; ends 50 requests after the replacement
                statuses.append(http.get(rt.url + "/whoami").status_code)
                if stop_after and len(statuses) > stop_after[0]:
                    return

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(statuses) > 20)
        assert rt.inject("p", "GET", "/leak?mb=300").status == 200
        wait_for(lambda: _pool(rt, "p")["restarts"] == 1)
    finally:
        stop_after.append(len(statuses) + 50)
        for thread in threads:
            thread.join(60)
    assert len(statuses) > 70 and set(statuses) == {200}
    after = {w["pid"] for w in _pool(rt, "p")["workers"]}
    assert len(after) == 2 and len(after & before) == 1  # only the leaking one replaced


def test_the_soak_script_kills_workers_and_judges_failures_and_memory():
    import re
    import subprocess
    import sys

    from support import ROOT

    done = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--duration", "4", "--kill-every", "1",
         "--interval", "1", "--warmup", "1", "--connections", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = re.search(r"failures: (\d+) of (\d+) requests with (\d+) kills", done.stdout)
    assert verdict, done.stdout
    failed, sent, kills = map(int, verdict.groups())
    assert kills >= 2 and sent > 100 and failed <= 4 * kills
    assert re.search(r"restarts (\d+) for \d+ kills", done.stdout).group(1) == str(kills)
    assert "memory: " in done.stdout and ": within" in done.stdout
