"""Logs: every line of every worker reaches the main process once, as JSON, with
the request's ids, redacted; an access line per request; levels; a rotating file."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from support import app_config, wait_for

from watt.observability.logging import render
from watt.worker.telemetry import Redactor

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FIELDS = {"level", "time", "pid", "hostname", "app", "worker", "msg"}


@pytest.mark.parametrize("isolation", ["subinterpreter", "process"])
def test_print_stderr_and_logging_of_a_worker_reach_the_runtime_log(watt_runtime, isolation):
    rt = watt_runtime({"applications": [app_config("talky", isolation=isolation)]})
    assert rt.inject("talky", "GET", "/say").json() == {"said": True}
    expected = {("info", "print from talky"), ("warning", "stderr from talky"),
                ("error", "logging from talky"), ("info", "thread print from talky")}
    wait_for(lambda: expected <= {(r["level"], r["msg"]) for r in rt.logs(app="talky")})
    lines = [r for r in rt.logs(app="talky") if (r["level"], r["msg"]) in expected]
    assert len(lines) == 4  # each written once
    request_id = lines[0]["reqId"]
    for record in lines:
        assert FIELDS <= set(record)
        assert record["worker"] == 0 and record["reqId"] == request_id  # thread print too
    pid = {r["pid"] for r in lines}
    assert (pid == {os.getpid()}) == (isolation == "subinterpreter")
    assert next(r for r in lines if r["level"] == "error")["logger"] == "basic"


def test_one_access_line_per_request_per_app_with_request_and_trace_ids(watt_runtime):
    rt = watt_runtime({"entrypoint": "front", "applications": [
        app_config("front"), app_config("back", isolation="process")]})
    reply = httpx.get(f"{rt.url}/mesh?target=back.plt.local",
                      headers={"traceparent": TRACEPARENT, "x-request-id": "req-42"})
    assert reply.status_code == 200
    wait_for(lambda: len([r for r in rt.logs() if r.get("path")]) >= 2)
    access = [r for r in rt.logs() if "status" in r and r.get("reqId") == "req-42"]
    assert sorted((r["app"], r["method"], r["path"], r["status"]) for r in access) == [
        ("back", "GET", "/whoami", 200), ("front", "GET", "/mesh", 200)]
    for record in access:
        assert FIELDS <= set(record)
        assert record["traceId"] == "0af7651916cd43dd8448eb211c80319c"
        assert record["duration"] > 0 and record["msg"].endswith(" 200")
    front = next(r for r in access if r["app"] == "front")
    back = next(r for r in access if r["app"] == "back")
    assert back["duration"] < front["duration"]  # the mesh hop is inside the front's request


def test_access_log_can_be_switched_off(watt_runtime):
    rt = watt_runtime({"applications": [app_config("quiet")], "logger": {"accessLog": False}})
    for _ in range(3):
        assert rt.inject("quiet", "GET", "/say").status == 200
    wait_for(lambda: len(rt.logs(msg="thread print from quiet")) == 3)
    assert not [r for r in rt.logs() if "status" in r]


def test_a_token_never_reaches_the_output(watt_runtime, capfd):
    rt = watt_runtime({"applications": [app_config("auth", isolation="process")],
                       "logger": {"redact": ["req.headers.authorization",
                                             "req.headers.cookie", "*.password"]}})
    secret = "Bearer s3cr3t-t0ken-value"
    reply = httpx.get(f"{rt.url}/log-headers",
                      headers={"Authorization": secret, "Cookie": "session=s3cr3t-cookie"})
    assert reply.status_code == 200
    wait_for(lambda: len(rt.logs(msg="loguru saw headers")) == 1
             and len(rt.logs(msg="stdlib saw headers")) == 1)
    for message in ("stdlib saw headers", "loguru saw headers"):
        record = rt.logs(msg=message)[0]
        headers = record["req"]["headers"]
        assert headers["authorization"] == "[Redacted]"
        assert headers["cookie"] == "[Redacted]"
        assert headers["host"]  # the rest is kept
    assert rt.logs(msg="loguru saw headers")[0]["user"] == "ada"  # loguru's bind() fields
    written = capfd.readouterr()
    assert "s3cr3t" not in written.out + written.err
    assert "[Redacted]" in written.out
    assert not [line for line in rt._lines if "s3cr3t" in line]


def test_levels_globally_and_per_application(watt_runtime):
    rt = watt_runtime({"entrypoint": "loud", "logger": {"level": "warning"}, "applications": [
        app_config("loud", logger={"level": "debug"}), app_config("hushed")]})
    for app_id in ("loud", "hushed"):
        assert rt.inject(app_id, "GET", "/levels").status == 200
    wait_for(lambda: len(rt.logs(app="loud", msg="loguru error")) == 1
             and len(rt.logs(app="hushed", msg="loguru error")) == 1)
    loud = {r["msg"] for r in rt.logs(app="loud")}
    hushed = {r["msg"] for r in rt.logs(app="hushed")}
    assert {"stdlib debug", "loguru debug", "stdlib info", "loguru info"} <= loud
    assert {"stdlib warning", "loguru warning", "stdlib error", "loguru error"} <= hushed
    assert not {"stdlib debug", "loguru debug", "stdlib info", "loguru info"} & hushed
    assert not [r for r in rt.logs(app="hushed") if "status" in r]  # access lines are info


def test_logs_go_to_a_rotating_file(watt_runtime, tmp_path):
    log_file = tmp_path / "logs" / "watt.log"
    rt = watt_runtime({"applications": [app_config("filed")], "logger": {
        "file": {"path": str(log_file), "rotation": "2 KB", "retention": 2}}})
    for _ in range(20):
        assert rt.inject("filed", "GET", "/say").status == 200
    wait_for(lambda: len(rt.logs(msg="thread print from filed")) == 20)
    rotated = sorted(p.name for p in log_file.parent.iterdir())
    assert rotated == ["watt.log", "watt.log.1", "watt.log.2"]  # retention: 2 old files
    for path in log_file.parent.iterdir():
        lines = path.read_text().splitlines()
        assert lines and all(json.loads(line)["level"] for line in lines)
        assert path.stat().st_size <= 2000 + 1000  # rotated at about the size asked
    assert "thread print from filed" in log_file.read_text() + (
        log_file.parent / "watt.log.1").read_text()


def test_a_bad_rotation_is_a_config_error(watt_runtime, tmp_path):
    from watt import WattError

    with pytest.raises(WattError) as info:
        watt_runtime({"applications": [app_config("x")], "logger": {
            "file": {"path": str(tmp_path / "w.log"), "rotation": "sometimes"}}})
    assert info.value.code == "WATT_CONFIG_INVALID"
    assert "logger.file.rotation" in str(info.value)


# -- pure parts ---------------------------------------------------------------------------
def test_redactor_censors_paths_with_wildcards_and_any_case_without_touching_the_input():
    redact = Redactor(["req.headers.authorization", "*.password", "token"], censor="***")
    fields = {"req": {"headers": {"Authorization": "x", "accept": "y"}},
              "db": {"password": "p", "user": "u"}, "token": "t", "other": [1, 2]}
    out = redact(fields)
    assert out == {"req": {"headers": {"Authorization": "***", "accept": "y"}},
                   "db": {"password": "***", "user": "u"}, "token": "***", "other": [1, 2]}
    assert fields["db"]["password"] == "p"  # the caller's dict is untouched
    assert redact({"unrelated": 1}) == {"unrelated": 1}


def test_render_makes_a_json_line_readable():
    line = json.dumps({"level": "error", "time": 1_700_000_000_123, "pid": 1, "hostname": "h",
                       "app": "a", "worker": 2, "msg": "boom", "reqId": "r1"})
    text = render(line)
    assert "ERROR" in text and "a#2 boom" in text and "reqId=r1" in text
    assert ".123" in text
    assert "\x1b[" in render(line, colour=True)
    assert render("not json") == "not json"
