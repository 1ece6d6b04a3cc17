"""Log transports (``logger.transports``): several at once, each with its own level and
format — console, rotating file, syslog (RFC 5424 over a unix socket, UDP, TCP), the
Elasticsearch/OpenSearch bulk API (a local HTTP server checks the wire format), custom
sinks (``module:callable`` and the ``watt.log_transports`` entry point group); a full
queue drops and counts, never blocks."""

from __future__ import annotations

import http.server
import importlib
import json
import re
import socket
import threading
import time

import httpx
import log_sinks
import msgspec
import pytest
from support import app_config, recording_server, wait_for

from watt.config import load_config
from watt.config_telemetry import LoggerConfig
from watt.errors import WattError
from watt.observability.batch import BatchWorker
from watt.observability.log_transports import bulk_body, syslog_message
from watt.observability.logging import LogHub

# <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
RFC5424 = re.compile(r"^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (\d+) "
                     r"(\S+) - (.*)$", re.DOTALL)


def hub_with(*transports, **logger) -> LogHub:
    hub = LogHub()
    hub.configure(msgspec.convert({"transports": list(transports), **logger}, LoggerConfig))
    return hub


def line(msg: str, level: str = "info", **fields) -> str:
    return json.dumps({"level": level, "time": 1700000000123, "pid": 42, "hostname": "box",
                       "app": "shop", "msg": msg, **fields})


def test_every_transport_at_once_from_a_running_runtime(watt_runtime, tmp_path):
    log_sinks.received.clear()
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(tmp_path / "log.sock"))
    syslog.settimeout(20)
    with recording_server("application/json") as (base, bulk), syslog:
        rt = watt_runtime({"entrypoint": "front", "logger": {"transports": [
            {"type": "console"},
            {"type": "syslog", "address": f"unix://{tmp_path / 'log.sock'}",
             "facility": "local3", "level": "error", "flushInterval": 10},
            {"type": "elasticsearch", "url": base, "index": "logs-%Y", "flushInterval": 10,
             "username": "elastic", "password": "s3cret"},
            {"type": "sink", "sink": "log_sinks:collect", "flushInterval": 10},
            {"type": "file", "path": str(tmp_path / "pretty.log"), "format": "pretty"},
        ]}, "applications": [app_config("front")]})
        assert httpx.get(f"{rt.url}/say").status_code == 200
        # syslog (level error): the application's stdlib logging.error line, not the prints
        messages = []
        while not any("logging from front" in m for m in messages):
            messages.append(syslog.recv(65536).decode())
        found = RFC5424.match(next(m for m in messages if "logging from front" in m))
        assert found, messages
        pri, _, _, app_name, _, _, msg = found.groups()
        assert int(pri) == 19 * 8 + 3  # local3, error
        assert app_name == "front" and json.loads(msg)["msg"] == "logging from front"
        assert all(json.loads(RFC5424.match(m)[7])["level"] in ("error", "critical")
                   for m in messages)
        # the bulk API: NDJSON action + document pairs
        wait_for(lambda: any(b"print from front" in body for *_, body in bulk))
        method, path, headers, body = next(r for r in bulk if b"print from front" in r[3])
        headers = {k.lower(): v for k, v in headers.items()}
        assert (method, path) == ("POST", "/_bulk")
        assert headers["content-type"] == "application/x-ndjson"
        assert headers["authorization"] == "Basic ZWxhc3RpYzpzM2NyZXQ="
        assert body.endswith(b"\n")
        rows = [json.loads(row) for row in body.decode().splitlines()]
        actions, documents = rows[0::2], rows[1::2]
        assert all(list(a) == ["create"] and re.fullmatch(r"logs-\d{4}", a["create"]["_index"])
                   for a in actions)
        doc = next(d for d in documents if d["msg"] == "print from front")
        assert doc["app"] == "front" and doc["@timestamp"].endswith("Z")
        # the custom sink: every line, as text with its decoded record
        wait_for(lambda: any(m.record.get("msg") == "thread print from front"
                             for m in log_sinks.received))
        assert all(m.endswith("\n") and json.loads(m) == m.record for m in log_sinks.received)
        # the file, readable
        wait_for(lambda: "print from front" in (tmp_path / "pretty.log").read_text())
        assert not (tmp_path / "pretty.log").read_text().startswith("{")
        # the counters are metrics
        text = rt.metrics()
        assert 'watt_log_lines_dropped_total{transport="elasticsearch",type="elasticsearch"} ' \
            '0.0' in text
        assert 'watt_log_lines_failed_total{transport="syslog",type="syslog"} 0.0' in text
        assert re.search(r'watt_entrypoint_active_connections\{engine="\w+"\} \d', text)


def test_syslog_over_udp_and_over_tcp_with_octet_counting():
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(20)
    tcp = socket.create_server(("127.0.0.1", 0))
    tcp.settimeout(20)
    with udp, tcp:
        hub = hub_with({"type": "syslog", "address": f"udp://127.0.0.1:{udp.getsockname()[1]}",
                        "appName": "api", "flushInterval": 10},
                       {"type": "syslog", "address": f"tcp://127.0.0.1:{tcp.getsockname()[1]}",
                        "format": "pretty", "flushInterval": 10})
        try:
            hub.write("warning", line("disk low", "warning"))
            hub.write("info", line("second"))
            datagram = udp.recv(65536).decode()
            assert RFC5424.match(datagram).groups()[:6] == (
                "12", "2023-11-14T22:13:20.123Z", "box", "api", "42", "-")
            conn, _ = tcp.accept()
            with conn:
                conn.settimeout(20)
                data = b""
                while data.count(b"<") < 2:
                    data += conn.recv(65536)
            frames = []
            while data:  # RFC 6587: "LEN SP MSG", MSG exactly LEN bytes
                size, _, rest = data.partition(b" ")
                frames.append(rest[:int(size)].decode())
                data = rest[int(size):]
            assert [RFC5424.match(f)[4] for f in frames] == ["shop", "shop"]
            assert "WARNING shop disk low" in frames[0] and not frames[0].endswith("}")
        finally:
            hub.close()


def test_syslog_message_maps_levels_and_marks_access_lines():
    assert syslog_message(line("x", "critical"), "local7").startswith(b"<186>1 ")
    access = syslog_message(line("GET / 200", status=200, duration=1.5), "user").decode()
    assert RFC5424.match(access)[6] == "access"
    weird = syslog_message(line("x", app="my app\u00e9"), "user", None).decode()
    assert RFC5424.match(weird)[4] == "myapp"


class _Bulk(http.server.BaseHTTPRequestHandler):
    """A bulk endpoint that holds every request until ``release`` is set."""

    release = threading.Event()
    arrived = threading.Event()
    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        _Bulk.bodies.append(body)
        _Bulk.arrived.set()
        _Bulk.release.wait(30)
        count = body.count(b"\n") // 2
        answer = json.dumps({"errors": False, "items": [{"create": {"status": 201}}] * count})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


def test_a_full_queue_drops_and_counts_without_blocking():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bulk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub = hub_with({"type": "opensearch", "url": f"http://127.0.0.1:{server.server_port}",
                    "queueSize": 5, "batchSize": 2, "flushInterval": 10})
    try:
        hub.write("info", line("first"))
        assert _Bulk.arrived.wait(20)  # the sending thread is now held by the server
        started = time.monotonic()
        for n in range(8):
            hub.write("info", line(f"line {n}"))
        assert time.monotonic() - started < 0.5  # never waits on the destination
        assert hub.transport_counts() == [("opensearch", "opensearch", 3, 0)]
        _Bulk.release.set()
        wait_for(lambda: sum(b.count(b"\n") for b in _Bulk.bodies) // 2 == 6)
        sent = [json.loads(row)["msg"] for body in _Bulk.bodies
                for row in body.decode().splitlines()[1::2]]
        assert sent == ["first", "line 0", "line 1", "line 2", "line 3", "line 4"]
    finally:
        _Bulk.release.set()
        hub.close()
        server.shutdown()
        server.server_close()


def test_a_refused_bulk_request_counts_as_failed_and_is_reported(capfd):
    with recording_server() as (base, received):
        hub = hub_with({"type": "elasticsearch", "url": base + "/missing-path-is-fine",
                        "flushInterval": 10, "apiKey": "k3y"})
        try:
            hub.write("info", line("a"))
            wait_for(lambda: received)
            assert received[0][1] == "/missing-path-is-fine/_bulk"
            assert {k.lower(): v for k, v in received[0][2].items()}["authorization"] == \
                "ApiKey k3y"
        finally:
            hub.close()
    worker = BatchWorker("t", lambda batch: 1 / 0, delay=0.01)
    worker.offer("x")
    worker.close()
    assert (worker.failed, worker.sent) == (1, 0)


def test_bulk_body_is_ndjson_of_action_and_document():
    body = bulk_body([line("a"), "not json"], "watt-%Y.%m.%d")
    rows = body.decode().split("\n")
    assert rows[-1] == "" and len(rows) == 5
    assert json.loads(rows[0]) == {"create": {"_index": "watt-2023.11.14"}}
    assert json.loads(rows[1])["@timestamp"] == "2023-11-14T22:13:20.123Z"
    assert json.loads(rows[3])["msg"] == "not json"


def test_file_transport_rotates_by_size_and_keeps_retention(tmp_path):
    hub = hub_with({"type": "file", "path": str(tmp_path / "app.log"), "rotation": "300 B",
                    "retention": 2, "level": "warning"})
    try:
        for n in range(20):
            hub.write("warning", line(f"warning number {n}", "warning"))
            hub.write("info", line(f"info number {n}"))
    finally:
        hub.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["app.log", "app.log.1", "app.log.2"]
    kept = "".join((tmp_path / n).read_text() for n in names)
    assert "warning number 19" in kept and "info number" not in kept


def test_file_transport_rotates_by_time_and_keeps_retention(tmp_path):
    hub = hub_with({"type": "file", "path": str(tmp_path / "app.log"), "rotation": "daily",
                    "retention": 1})
    handler = hub.outputs[0]._handler
    try:
        for day in (1, 2, 3):  # the handler's next rollover time comes, without waiting
            handler.rolloverAt = day * 86400
            hub.write("info", line(f"day {day}"))
    finally:
        hub.close()
    rotated = "app.log." + time.strftime("%Y-%m-%d", time.localtime(2 * 86400))  # day 2's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log", rotated]
    assert "day 2" in (tmp_path / rotated).read_text()
    assert "day 3" in (tmp_path / "app.log").read_text()


def test_console_transport_level_and_format(capsys):
    hub = hub_with({"type": "console", "level": "error", "format": "json"})
    try:
        hub.write("info", line("quiet"))
        hub.write("error", line("loud", "error"))
        hub.write_many(("info", "error"), (line("quiet 2"), line("loud 2", "error")))
    finally:
        hub.close()
    out = capsys.readouterr().out
    assert "quiet" not in out and out.count('"loud') == 2
    hub = hub_with({"type": "file", "path": "/dev/null"})  # no console listed: no stdout
    hub.write("error", line("nowhere", "error"))
    hub.close()
    assert "nowhere" not in capsys.readouterr().out
    assert list(hub.recent)[-1] == line("nowhere", "error")  # `watt logs` still has it


def test_a_transport_from_an_entry_point(tmp_path, monkeypatch):
    dist = tmp_path / "watt_log_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: watt-log-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[watt.log_transports]\ndemo = log_sinks:Factory\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    log_sinks.Factory.made.clear()
    hub = hub_with({"type": "sink", "sink": "demo", "options": {"index": "x"},
                    "format": "pretty", "flushInterval": 10})
    try:
        hub.write("info", line("through the entry point"))
        made = log_sinks.Factory.made[0]
        assert made.options == {"index": "x"}
        wait_for(lambda: made.lines)
        assert "INFO    shop through the entry point" in made.lines[0]
    finally:
        hub.close()


@pytest.mark.parametrize(("transport", "code", "words"), [
    ({"type": "sink", "sink": "no_such_module_here:x"}, "WATT_LOG_SINK_NOT_FOUND",
     "no_such_module_here"),
    ({"type": "sink", "sink": "nothing-registered"}, "WATT_LOG_SINK_NOT_FOUND",
     "watt.log_transports"),
    ({"type": "sink", "sink": "log_sinks:received"}, "WATT_LOG_SINK_NOT_FOUND",
     "not callable"),
    ({"type": "syslog", "address": "udp://nowhere"}, "WATT_CONFIG_INVALID", "udp://host:port"),
    ({"type": "file", "path": "/tmp/x.log", "rotation": "sometimes"}, "WATT_CONFIG_INVALID",
     "logger.transports[0].rotation"),
])
def test_bad_transports_are_clear_errors(transport, code, words):
    with pytest.raises(WattError) as info:
        hub_with(transport)
    assert info.value.code == code and words in str(info.value)


def test_transport_keys_are_checked_and_paths_resolved(tmp_path):
    (tmp_path / "a").mkdir()
    base = {"applications": [{"id": "a", "path": "a"}]}
    (tmp_path / "watt.json").write_text(json.dumps({**base, "logger": {"transports": [
        {"type": "file", "path": "logs/w.log"}]}}))
    loaded = load_config(tmp_path / "watt.json")
    assert loaded.logger.transports[0].path == str(tmp_path / "logs" / "w.log")
    (tmp_path / "watt.json").write_text(json.dumps({**base, "logger": {"transports": [
        {"type": "syslog", "url": "x"}]}}))
    with pytest.raises(WattError) as info:
        load_config(tmp_path / "watt.json")
    assert "url" in str(info.value)
    with pytest.raises(WattError) as info:
        hub_with({"type": "console"}, {"type": "console"})
    assert "at most one console" in str(info.value)


def test_the_old_keys_still_work(tmp_path, capsys):
    hub = LogHub()
    hub.configure(msgspec.convert({"pretty": False, "file": {"path": str(tmp_path / "f.log")}},
                                  LoggerConfig))
    try:
        hub.write("info", line("both"))
    finally:
        hub.close()
    assert '"both"' in capsys.readouterr().out
    assert '"both"' in (tmp_path / "f.log").read_text()
