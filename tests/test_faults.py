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
            slow = [pool.submit(httpx.get, url + "/slow", params={"delay": "4"}, timeout=30)
                    for _ in range(50)]
            wait_for(lambda: httpx.get(url + "/in-flight", timeout=30).json()["in_flight"] == 50)
            proc.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: _refuses(host, port))
            # Refused while the 50 were still being answered, not after.
            assert not any(f.done() for f in slow)
            statuses = [f.result().status_code for f in slow]
        assert statuses == [200] * 50
        assert proc.wait() == 0
    finally:
        proc.kill()
