"""/ready and /live on the runtime's own server, off the entrypoint."""

from __future__ import annotations

import httpx
from support import app_config, wait_for


def test_ready_and_live_follow_the_workers(watt_runtime):
    rt = watt_runtime({"restartOnError": False, "metrics": {"enabled": True, "port": 0},
                       "entrypoint": "a", "applications": [
                           app_config("a"), app_config("p", isolation="process")]})
    assert rt.runtime.metrics_url != rt.url
    ready = httpx.get(rt.runtime.metrics_url + "/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["readyWorkers"] == {"a": 1, "p": 1}
    assert httpx.get(rt.runtime.metrics_url + "/live", timeout=30).json() == {
        "live": True, "state": "running"}
    # The entrypoint does not serve them: they are the application's paths there.
    assert httpx.get(rt.url + "/ready", timeout=30).status_code == 404
    assert rt.inject("p", "GET", "/crash").status == 502  # p has no worker left

    def not_ready():
        response = httpx.get(rt.runtime.metrics_url + "/ready", timeout=30)
        return response.status_code == 503 and response.json()["notReady"] == ["p"]

    wait_for(not_ready)
    assert httpx.get(rt.runtime.metrics_url + "/live", timeout=30).status_code == 200


def test_probes_are_off_unless_configured(watt_runtime):
    rt = watt_runtime({"applications": [app_config("a")]})
    assert rt.runtime.metrics_url is None
