"""Bad input to today's features: each mistake a user makes gets a stable WATT_ code,
the key path and the config file's line (or the application id), never a traceback
from Watt's own code nor a silent acceptance.  Pure calls only (load_config, the
Lambda translation, the build command in-process): no runtime is started."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from support import APPS, WattProcess
from test_edge_tls import cert as tls_cert  # noqa: F401 - the fixture: a self-signed pair

from watt.cache import invalidation_key
from watt.cli import main
from watt.config import load_config
from watt.config_checks import locate
from watt.config_telemetry import LoggerConfig
from watt.edge.tls import TlsFiles
from watt.edge.tls import context as tls_context
from watt.edge.tls import resolve as resolve_tls
from watt.errors import ConfigError, WattError
from watt.interceptors import CircuitBreaker, Retry
from watt.management.client import find_runtime
from watt.observability.logging import LogHub
from watt.serverless import to_request

BASIC = str(APPS / "basic")
SECRET = {"secret": "s3cret-s3cret-s3cret"}


def _with(extra: dict, app: dict | None = None) -> dict:
    config = {"applications": [{"id": "api", "path": BASIC, "app": "main:app", **(app or {})}]}
    config.update(extra)
    return config


# (case, config keys, application keys, code, key path, fragment of the message)
CONFIG_CASES = [
    ("redis url of another scheme", {"httpCache": {"redis": {"url": "http://127.0.0.1:6379"}}},
     None, "WATT_CONFIG_INVALID_TYPE", "httpCache.redis.url", "redis|rediss|unix"),
    ("cache tags header with a space", {"httpCache": {"cacheTagsHeader": "x cache tags"}}, None,
     "WATT_CONFIG_INVALID_TYPE", "httpCache.cacheTagsHeader", "regex"),
    ("cache of an unknown application", {"httpCache": {"applications": ["apj"]}}, None,
     "WATT_CONFIG_INVALID", "httpCache.applications[0]", "did you mean 'api'"),
    ("trusted proxy that is no network", {"server": {"trustedProxies": ["10.0.0.0/33"]}}, None,
     "WATT_CONFIG_INVALID", "server.trustedProxies[0]", "not an IP address"),
    ("cors origin without a scheme", {"server": {"cors": {"origin": "example.com"}}}, None,
     "WATT_CONFIG_INVALID", "server.cors.origin", "is not an origin"),
    ("cors origin with a final slash", {"server": {"cors": {"origin": ["https://a.test/"]}}},
     None, "WATT_CONFIG_INVALID", "server.cors.origin[0]", "without a path"),
    ("application cors origin", {}, {"cors": {"origin": "a.test"}}, "WATT_CONFIG_INVALID",
     "applications[0].cors.origin", "is not an origin"),
    ("cors method with a space", {"server": {"cors": {"methods": ["G ET"]}}}, None,
     "WATT_CONFIG_INVALID_TYPE", "server.cors.methods[0]", "regex"),
    ("auth route with no way to check", {"auth": {"routes": [{"prefix": "/api"}]}}, None,
     "WATT_CONFIG_INVALID", "auth.routes[0]", "needs `jwt` or `introspection`"),
    ("auth public path without /", {"auth": {"routes": [{"prefix": "/", "jwt": SECRET}],
                                             "publicPaths": ["health"]}}, None,
     "WATT_CONFIG_INVALID", "auth.publicPaths[0]", "can never match"),
    ("route public path without /", {"auth": {"routes": [{"prefix": "/", "jwt": SECRET,
                                                          "publicPaths": ["docs/*"]}]}}, None,
     "WATT_CONFIG_INVALID", "auth.routes[0].publicPaths[0]", "can never match"),
    ("file transport rotation", {"logger": {"transports": [
        {"type": "file", "path": "w.log", "rotation": "sometimes"}]}}, None,
     "WATT_CONFIG_INVALID", "logger.transports[0].rotation", "neither a size"),
    ("logger.file rotation", {"logger": {"file": {"path": "w.log", "rotation": "10 parsecs"}}},
     None, "WATT_CONFIG_INVALID", "logger.file.rotation", "neither a size"),
    ("syslog address without a scheme", {"logger": {"transports": [
        {"type": "syslog", "address": "dev/log"}]}}, None,
     "WATT_CONFIG_INVALID", "logger.transports[0].address", "is not unix:///path"),
    ("syslog udp address without a port", {"logger": {"transports": [
        {"type": "syslog", "address": "udp://logs.test"}]}}, None,
     "WATT_CONFIG_INVALID", "logger.transports[0].address", "udp://host:port"),
    ("elasticsearch url without a scheme", {"logger": {"transports": [
        {"type": "elasticsearch", "url": "127.0.0.1:9200"}]}}, None,
     "WATT_CONFIG_INVALID_TYPE", "logger.transports[0].url", "https?"),
    ("zipkin url without a scheme", {"telemetry": {"exporter": {
        "type": "zipkin", "options": {"url": "127.0.0.1:9411/api/v2/spans"}}}}, None,
     "WATT_CONFIG_INVALID_TYPE", "telemetry.exporter.options.url", "https?"),
    ("metrics.otlp endpoint without a scheme", {"metrics": {"otlp": {"endpoint": "collector"}}},
     None, "WATT_CONFIG_INVALID_TYPE", "metrics.otlp.endpoint", "https?"),
    ("pushgateway url without a scheme", {"metrics": {"push": {"url": "127.0.0.1:9091"}}}, None,
     "WATT_CONFIG_INVALID_TYPE", "metrics.push.url", "https?"),
    ("span batch larger than the queue", {"telemetry": {"batch": {
        "maxQueueSize": 10, "maxExportBatchSize": 100}}}, None,
     "WATT_CONFIG_INVALID", "telemetry.batch.maxExportBatchSize", "larger than `maxQueueSize`"),
    ("fewer max replicas than replicas", {"deploy": {"replicas": 5, "maxReplicas": 2}}, None,
     "WATT_CONFIG_INVALID", "deploy.maxReplicas", "fewer than `replicas`"),
    ("cpu limit below the request", {"deploy": {"resources": {"cpu": "1",
                                                             "cpuLimit": "500m"}}}, None,
     "WATT_CONFIG_INVALID", "deploy.resources.cpuLimit", "less than the cpu requested"),
    ("memory limit below the request", {"deploy": {"resources": {"memory": "1Gi",
                                                                "memoryLimit": "512Mi"}}},
     None, "WATT_CONFIG_INVALID", "deploy.resources.memoryLimit", "Kubernetes refuses"),
    ("image that is no image reference", {"deploy": {"image": "My Shop:latest"}}, None,
     "WATT_CONFIG_INVALID_TYPE", "deploy.image", "regex"),
]


@pytest.mark.parametrize(("extra", "app", "code", "key", "fragment"),
                         [case[1:] for case in CONFIG_CASES],
                         ids=[case[0] for case in CONFIG_CASES])
def test_a_config_mistake_names_its_code_key_and_line(tmp_path: Path, extra, app, code, key,
                                                      fragment) -> None:
    file = tmp_path / "watt.json"
    file.write_text(json.dumps(_with(extra, app), indent=2))
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    error = info.value
    assert (error.code, error.key) == (code, key), str(error)
    assert error.file == str(file) and error.line, str(error)
    assert f"`{key}`" in str(error) and fragment in str(error), str(error)


def test_the_same_sections_written_right_load(tmp_path: Path) -> None:
    """The checks above refuse only mistakes: the right forms of each load, and files
    the config names are not opened (they may exist only where Watt is deployed)."""
    (tmp_path / "api").mkdir()
    config = {
        "applications": [{"id": "api", "path": "api", "openapi": "openapi.json",
                          "cors": {"origin": ["https://a.test", "http://localhost:5173",
                                              "null"]}}],
        "server": {"tls": {"cert": "/etc/tls/cert.pem", "key": "/etc/tls/key.pem"},
                   "trustedProxies": ["10.0.0.0/8", "::1", "*"],
                   "cors": {"origin": "*", "methods": ["GET", "PATCH"]}},
        "httpCache": {"applications": ["api"], "redis": {"url": "unix:///run/redis.sock"}},
        "auth": {"routes": [{"prefix": "/", "jwt": {"publicKey": "jwt.pem"},
                             "publicPaths": ["/docs/*"]}], "publicPaths": ["/health"]},
        "logger": {"transports": [{"type": "file", "path": "w.log", "rotation": "500 KiB"},
                                  {"type": "syslog", "address": "udp://[::1]:514"}]},
        "telemetry": {"exporter": {"type": "zipkin",
                                   "options": {"url": "http://127.0.0.1:9411/api/v2/spans"}}},
        "deploy": {"image": "ghcr.io/acme/shop:V1.2", "replicas": 2, "maxReplicas": 2,
                   "resources": {"cpu": "500m", "cpuLimit": "1", "memory": "1Gi",
                                 "memoryLimit": "1024Mi"}},
    }
    (tmp_path / "watt.json").write_text(json.dumps(config))
    loaded = load_config(tmp_path / "watt.json", env={})
    assert loaded.config.deploy.image == "ghcr.io/acme/shop:V1.2"


# -- Lambda events of an unknown shape (watt.serverless, what make_handler's handler calls) --
EVENT_CASES = [
    ("headers as a list", {"httpMethod": "GET", "headers": [["a", "b"]]},
     "`headers` is list, not an object"),
    ("body as an object", {"httpMethod": "POST", "body": {"a": 1}},
     "`body` is dict, not a string"),
    ("base64 body that is a number", {"httpMethod": "POST", "body": 5, "isBase64Encoded": True},
     "`body` is int"),
    ("method as a number", {"httpMethod": 3}, "`httpMethod` is int"),
    ("path as a number", {"httpMethod": "GET", "path": 5}, "`path` is int"),
    ("query as a string", {"httpMethod": "GET", "queryStringParameters": "a=b"},
     "`queryStringParameters` is str"),
    ("requestContext as a string", {"httpMethod": "GET", "requestContext": "x"},
     "`requestContext` is str"),
    ("v2 http as a string", {"version": "2.0", "rawPath": "/", "requestContext": {"http": "x"}},
     "`requestContext.http` is str"),
    ("multi-value header that is a number", {"httpMethod": "GET",
                                             "multiValueHeaders": {"a": 5}},
     "the v1 event has a value of the wrong type"),
    ("v2 cookies that are numbers", {"version": "2.0", "rawPath": "/", "cookies": [1]},
     "the v2 event has a value of the wrong type"),
    ("alb client address as a number", {"httpMethod": "GET", "requestContext": {"elb": {}},
                                        "headers": {"x-forwarded-for": 5}},
     "the alb event has a value of the wrong type"),
]


@pytest.mark.parametrize(("event", "fragment"), [case[1:] for case in EVENT_CASES],
                         ids=[case[0] for case in EVENT_CASES])
def test_a_lambda_event_of_an_unknown_shape_is_a_serverless_error(event, fragment) -> None:
    with pytest.raises(WattError) as info:
        to_request(event)
    assert info.value.code == "WATT_SERVERLESS_EVENT" and fragment in str(info.value)


def test_lambda_headers_latin1_cannot_hold_go_as_utf8() -> None:
    request = to_request({"httpMethod": "GET", "headers": {"x-name": "Zoë €"}})
    assert (b"x-name", "Zoë €".encode()) in request.headers
    assert to_request({"httpMethod": None}).method == "GET"  # null: the default, as absent


# -- watt build --out onto something that is not a folder --------------------------------
@pytest.mark.parametrize(("out", "fragment"), [
    ("afile", "is a file, not a folder"),
    ("afile/sub", "cannot write there"),
])
def test_build_out_that_cannot_be_a_folder(tmp_path: Path, out: str, fragment: str) -> None:
    (tmp_path / "watt.json").write_text(json.dumps(_with({})))
    (tmp_path / "afile").write_text("not a folder")
    result = CliRunner().invoke(main, ["build", "--container", "-c",
                                       str(tmp_path / "watt.json"),
                                       "--out", str(tmp_path / out)])
    assert result.exit_code == 1, result.output
    assert "WATT_BUILD_OUT_INVALID" in result.output and fragment in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (tmp_path / "afile").read_text() == "not a folder"


# -- a log transport whose destination is unreachable ------------------------------------
def test_a_dead_log_transport_is_reported_on_stderr_when_no_console_shows_it(tmp_path: Path,
                                                                              capfd) -> None:
    """With `transports` and no console, a warning through the logger would go only to the
    dead transport itself: it is written to stderr instead (it was lost before)."""
    config = msgspec.convert({"transports": [{"type": "syslog", "flushInterval": 10,
                                              "address": f"unix://{tmp_path}/no.sock"}]},
                             LoggerConfig)

    async def run() -> LogHub:  # in a running loop, as the runtime configures it
        hub = LogHub()
        hub.configure(config)
        hub.write("info", json.dumps({"level": "info", "msg": "lost?"}))
        for _ in range(500):
            if hub.outputs[0].failed:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # a warning handed to the loop would run here
        return hub

    hub = asyncio.run(run())
    failed = hub.outputs[0].failed
    hub.close()
    assert failed == 1
    assert "log transport 'syslog' failed" in capfd.readouterr().err


# -- a trace collector that is down does not hold a stop for exportTimeout ---------------
def test_stopping_with_the_otlp_collector_down_takes_the_grace_not_the_export_timeout(
        ) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                        reason="the otlp extra is not installed")
    from watt.observability.tracing import CLOSE_GRACE, OtlpExporter

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = OtlpExporter(f"http://127.0.0.1:{port}/v1/traces", {})  # exportTimeout 30 s
    span = json.dumps({"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "GET /",
                       "kind": "SERVER", "startTimeUnixNano": 10_000,
                       "endTimeUnixNano": 20_000, "attributes": {}, "events": []})
    exporter.export(json.dumps({"service.name": "svc"}), (span,))
    started = time.monotonic()
    exporter.close()  # the SDK retries with back-off until told to stop
    assert time.monotonic() - started < CLOSE_GRACE + 3
    assert exporter.worker.failed == 1  # counted as lost, not silently gone


def test_the_sdks_retry_messages_are_not_raw_stderr_lines(tmp_path) -> None:
    # In a process of its own: pytest's log capture would hide the stdlib's last-resort
    # handler, which prints the SDK's bare retry messages on stderr.
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                        reason="the otlp extra is not installed")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    span = json.dumps({"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "GET /",
                       "kind": "SERVER", "startTimeUnixNano": 10_000,
                       "endTimeUnixNano": 20_000, "attributes": {}, "events": []})
    script = (
        "import json, sys\n"
        "from loguru import logger\n"
        "logger.remove(); logger.add(sys.stderr, level='INFO')\n"
        "from watt.observability.tracing import OtlpExporter\n"
        f"e = OtlpExporter('http://127.0.0.1:{port}/v1/traces', {{}})\n"
        f"e.export(json.dumps({{'service.name': 'svc'}}), ({span!r},))\n"
        "e.close()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Transient error" not in done.stderr  # a debug line now, below INFO


# -- cache invalidation keys no request can have (API, `watt cache invalidate`, watt.cache) --
@pytest.mark.parametrize("url", ["http://api.plt.local/x y", "http://[::1/",
                                 "http://api.plt.local:99999/", "http://a\tb/", "/relative",
                                 "api.plt.local/x"])
def test_an_invalidation_key_no_request_can_have_is_refused(url: str) -> None:
    with pytest.raises(WattError) as info:
        invalidation_key(url)
    assert info.value.code == "WATT_CACHE_BAD_INVALIDATION"


@pytest.mark.parametrize(("url", "key"), [
    ("https://Example.COM:443/a?b=1", "https://example.com/a?b=1"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("http://127.0.0.1:3042/p%20q", "http://127.0.0.1:3042/p%20q"),
])
def test_an_invalidation_key_a_request_can_have_is_normalized(url: str, key: str) -> None:
    assert invalidation_key(url) == key


@pytest.mark.parametrize(("args", "exit_code", "fragment"), [
    ([], 2, "give at least one --key or --tag"),
    (["http://api.plt.local/x"], 2, "give a URL with --key http://api.plt.local/x"),
    (["--key", "/x"], 1, "WATT_CACHE_BAD_INVALIDATION"),  # before any runtime is looked for
    (["--key", "http://api.plt.local/a b"], 1, "percent-encode"),
])
def test_watt_cache_invalidate_misuse(args: list[str], exit_code: int, fragment: str) -> None:
    result = CliRunner().invoke(main, ["cache", "invalidate", *args])
    assert result.exit_code == exit_code and fragment in result.output, result.output
    assert "Traceback" not in result.output


# -- a key found wrong only at start gets the config file and line too (watt start / dev) --
def test_a_key_found_wrong_at_start_is_located_in_the_config_file(tmp_path: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.delenv("WATT_ENV", raising=False)
    file = tmp_path / "watt.json"
    file.write_text(json.dumps(_with({"logger": {"transports": [
        {"type": "sink", "sink": "no_such_module_here:x"}]}}), indent=2))
    with pytest.raises(WattError) as info:  # what the runtime's start raises
        LogHub().configure(load_config(file, env={}).logger)
    error = info.value
    assert (error.code, error.key, error.file) == (
        "WATT_LOG_SINK_NOT_FOUND", "logger.transports[0].sink", None)
    locate(error, str(tmp_path))  # the folder, as `watt start -c DIR` takes it
    line = next(i for i, text in enumerate(file.read_text().splitlines(), 1) if '"sink": ' in text)
    assert (error.file, error.line) == (str(file), line)
    assert str(error).endswith(f"({file}:{line})")
    tls = _with({"server": {"tls": {"cert": "c.pem", "key": "k.pem"}}})
    file.write_text(json.dumps(tls, indent=2))
    with pytest.raises(WattError) as info:  # checked at start (the runtime's resolve)
        resolve_tls(load_config(file, env={}).server.tls, str(tmp_path))
    locate(info.value, str(file))
    line = next(i for i, text in enumerate(file.read_text().splitlines(), 1) if '"cert"' in text)
    assert (info.value.code, info.value.key, info.value.line) == (
        "WATT_TLS_INVALID", "server.tls.cert", line)
    openapi = WattError("cannot read", code="WATT_OPENAPI_INVALID", app_id="api",
                        key="applications[0].openapi", file=str(file))  # as validation says
    locate(openapi, str(file))
    assert openapi.line == 3 and "application 'api'" in str(openapi)  # the entry's "{"
    other = WattError("no key", code="WATT_ERROR")
    locate(other, str(file))  # not about a key: left alone
    assert other.file is None


# -- a command for a runtime that runs without its management API -----------------------
def test_a_runtime_without_management_api_is_named_as_such(tmp_path: Path) -> None:
    file = tmp_path / "watt.json"
    file.write_text(json.dumps(_with({"server": {"port": 0}, "managementApi": False})))
    runtime = WattProcess("-c", str(file))
    try:
        runtime.wait_url()
        with pytest.raises(WattError) as info:
            find_runtime(runtime.proc.pid, directory=tmp_path)
        assert info.value.code == "WATT_MANAGEMENT_NO_RUNTIME"
        assert "serves no management API" in str(info.value)
    finally:
        runtime.kill()
    with pytest.raises(WattError) as info:  # a process that has ended is just not running
        find_runtime(runtime.proc.pid, directory=tmp_path)
    assert "no Watt runtime with pid" in str(info.value)


# -- shipped interceptors refuse options they would misread (WATT_INTERCEPTOR_INVALID) -----
@pytest.mark.parametrize(("cls", "options", "fragment"), [
    (Retry, {"statuses": "503"}, "statuses must be a list"),  # was {5, 0, 3}
    (Retry, {"methods": "GET"}, "methods must be a list"),  # was {G, E, T}
    (Retry, {"backoff": -1}, "backoff must not be negative"),
    (Retry, {"max_backoff": -0.5}, "max_backoff must not be negative"),
    (Retry, {"attempts": 0}, "attempts must be at least 1"),
    (CircuitBreaker, {"reset": -30}, "reset must not be negative"),
])
def test_an_interceptor_option_it_would_misread_is_refused(cls, options, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        cls(**options)
    assert Retry(statuses=[503], methods=["get"]).methods == frozenset({"GET"})


# -- server.tls files that exist but cannot serve (found at start) -------------------------
def _key_file(folder: Path, name: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    (folder / name).write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(folder / name)


def _encrypted_copy(key_file: Path, folder: Path, password: bytes) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    (folder / "enc.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password)))
    return str(folder / "enc.pem")


@pytest.mark.parametrize(("case", "fragment"), [
    ("cert is not PEM", "`cert` holds no PEM certificate"),
    ("key is the certificate", "`key` holds no PEM private key"),
    ("key of another certificate", "the key is not the certificate's"),
    ("encrypted key, no password", "`password` is not set"),  # and no prompt on a terminal
    ("encrypted key, wrong password", "`password` is wrong"),
])
def test_tls_files_that_cannot_serve_say_why(tls_cert, tmp_path: Path,  # noqa: F811
                                             case: str, fragment: str) -> None:
    cert = tls_cert
    cert_file, key_file, password = str(cert / "cert.pem"), str(cert / "key.pem"), None
    if case == "cert is not PEM":
        cert_file = str(tmp_path / "c.pem")
        Path(cert_file).write_text("not a certificate")
    elif case == "key is the certificate":
        key_file = cert_file
    elif case == "key of another certificate":
        key_file = _key_file(tmp_path, "other.pem")
    else:
        key_file = _encrypted_copy(cert / "key.pem", tmp_path, b"right")
        password = "wrong" if "wrong" in case else None
    with pytest.raises(WattError) as info:
        tls_context(TlsFiles(cert_file, key_file, password))
    assert info.value.code == "WATT_TLS_INVALID" and fragment in str(info.value)
    assert "PEM lib" not in str(info.value)


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux `script` (a pty)")
def test_an_encrypted_key_without_password_never_prompts_on_a_terminal(
        tls_cert, tmp_path: Path) -> None:  # noqa: F811
    """On a terminal OpenSSL asks `Enter PEM pass phrase:` and waits: `watt start` hung."""
    key = _encrypted_copy(tls_cert / "key.pem", tmp_path, b"right")
    code = ("from watt.edge.tls import TlsFiles, context; "
            f"context(TlsFiles({str(tls_cert / 'cert.pem')!r}, {key!r}, None))")
    done = subprocess.run(["script", "-qec", f"{sys.executable} -c {shlex.quote(code)}",
                           "/dev/null"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert "pass phrase" not in done.stdout, done.stdout
    assert "WATT_TLS_INVALID" in done.stdout and "`password` is not set" in done.stdout


# -- invalidating with the shared Redis store down ----------------------------------------
def test_an_invalidation_redis_does_not_take_is_an_error_not_a_500() -> None:
    pytest.importorskip("redis", reason="the redis extra is not installed")
    from loguru import logger

    from watt.cache.tap import HttpCache
    from watt.config_cache import HttpCacheConfig, RedisCacheConfig

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = HttpCacheConfig(redis=RedisCacheConfig(url=f"redis://127.0.0.1:{port}/0",
                                                    timeout=0.5))

    async def run() -> None:
        cache = HttpCache(config, "api")
        with pytest.raises(WattError) as info:  # the API answers it as a 503
            await cache.invalidate(["http://api.plt.local/"], ["t"])
        assert info.value.code == "WATT_CACHE_STORE_UNAVAILABLE"
        assert "they may still be served" in str(info.value)
        cache.invalidate_soon((), ("t",))  # from a worker: a task nobody awaits
        await asyncio.gather(*cache._tasks)  # it ends without raising: a warning is logged

    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        asyncio.run(run())
    finally:
        logger.remove(sink)
    assert any("WATT_CACHE_STORE_UNAVAILABLE" in w for w in warnings), warnings
