"""The ``watt`` command as a user runs it, and the example stack."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
from support import APPS, ROOT, WattProcess

import watt


def test_watt_start_serves_the_example_and_stops_on_sigterm():
    proc = WattProcess("-c", "examples/hello/watt.json", "--port", "0")
    try:
        url = proc.wait_url()
        assert "Hello from the gateway" in httpx.get(url + "/", timeout=30).text
        reply = httpx.get(url + "/greet", params={"name": "Ada"}, timeout=30).json()
        assert reply["via"] == "mesh"
        assert reply["greeter"]["message"] == "Hello, Ada!"
        whoami = httpx.get(url + "/whoami", timeout=30).json()
        assert whoami["pid"] == proc.proc.pid
        assert whoami["interpreter"] != reply["greeter"]["interpreter"] != 0
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()


def test_example_through_the_pytest_fixture(watt_runtime):
    rt = watt_runtime(ROOT / "examples" / "hello" / "watt.json")
    assert httpx.get(rt.url + "/", timeout=30).status_code == 200
    assert rt.inject("greeter", "GET", "/hello?name=x").json()["message"] == "Hello, x!"


def test_config_typo_exits_2_with_the_code_and_no_traceback(tmp_path):
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({
        "server": {"port": 0, "hostnme": "127.0.0.1"},
        "applications": [{"id": "a", "path": str(APPS / "basic"), "app": "main:app"}]},
        indent=2))
    proc = WattProcess("-c", str(config))
    assert proc.wait() == 2
    err = "".join(proc.stderr)
    assert "WATT_CONFIG_UNKNOWN_KEY" in err and "hostnme" in err and str(config) in err
    assert "Traceback" not in err


def test_import_error_exits_1_with_the_app_traceback(tmp_path):
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "applications": [
        {"id": "broken", "path": str(APPS / "broken_import"), "app": "main:app"}]}))
    proc = WattProcess("-c", str(config))
    assert proc.wait() == 1
    err = "".join(proc.stderr)
    assert "WATT_APP_IMPORT_FAILED" in err and "'broken'" in err
    assert "broken_import/main.py\", line 5" in err
    assert "watt/runtime.py" not in err


def test_help_lists_start():
    out = subprocess.run([sys.executable, "-m", "watt.cli", "--help"], capture_output=True,
                         text=True, cwd=ROOT, check=True).stdout
    assert "start" in out
    out = subprocess.run([sys.executable, "-m", "watt.cli", "start", "--help"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "--config" in out and "--port" in out


def test_public_api_names_all_import():
    assert sorted(watt.__all__) == sorted(set(watt.__all__))
    for name in watt.__all__:
        assert getattr(watt, name) is not None, name


def test_an_application_that_never_starts_times_out_and_the_command_ends(tmp_path):
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "applications": [
        {"id": "stuck", "path": str(APPS / "hangs"), "app": "main:app"}]}))
    proc = WattProcess("-c", str(config), "--start-timeout", "2")
    assert proc.wait(timeout=60) == 1
    err = "".join(proc.stderr)
    assert "WATT_APP_START_TIMEOUT" in err and "'stuck'" in err


def test_watt_config_checks_and_prints_the_resolved_config(tmp_path):
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"workers": 2, "applications": [
        {"id": "a", "path": str(APPS / "basic"), "app": "main:app"}]}))
    out = subprocess.run([sys.executable, "-m", "watt.cli", "config", "-c", str(config),
                          "--resolved"], capture_output=True, text=True, cwd=ROOT, check=True)
    resolved = json.loads(out.stdout)
    assert resolved["applications"][0]["workers"] == 2 and resolved["entrypoint"] == "a"
    schema = subprocess.run([sys.executable, "-m", "watt.cli", "config", "--schema"],
                            capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert json.loads(schema) == json.loads((ROOT / "config.schema.json").read_text())
    config.write_text('{"applications": [], "bogus": 1}')
    bad = subprocess.run([sys.executable, "-m", "watt.cli", "config", "-c", str(config)],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "WATT_CONFIG_UNKNOWN_KEY" in bad.stderr


def test_watt_start_workers_overrides_every_application(tmp_path):
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "applications": [
        {"id": "a", "path": str(APPS / "basic"), "app": "main:app", "workers": 1}]}))
    proc = WattProcess("-c", str(config), "--workers", "2")
    try:
        url = proc.wait_url()
        seen = {httpx.get(url + "/whoami", timeout=30).json()["interpreter"] for _ in range(4)}
        assert len(seen) == 2
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()
