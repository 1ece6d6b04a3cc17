"""The outbound pipeline: interceptors around every outgoing request (mesh and external,
every client), external calls observed (span, metric, debug line), env proxies.

The caller app (tests/apps/outbound) makes each call from inside a worker; the
external services are HTTP servers this test starts on 127.0.0.1 (never the
internet): an upstream that can fail N times, and a forward proxy that records
what it relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import json
import socket
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from support import app_config, wait_for

from watt.errors import WattError
from watt.interceptors import (
    CircuitBreaker,
    DefaultTimeout,
    InterceptorError,
    Request,
    Response,
    Retry,
    SendError,
    SetHeaders,
)
from watt.testing import RuntimeHandle

CLIENTS = ["httpx", "httpx-sync", "requests", "urllib3", "urllib", "aiohttp"]
MESH_CLIENTS = [*CLIENTS, "fetch", "mesh-transport"]  # the last two: the mesh only


# -- servers of the test ------------------------------------------------------------------
@contextlib.contextmanager
def serve(handler_class):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Upstream:
    """An external service: ``/echo``; ``/flaky/<key>?fail=N`` answers 503 to the first N
    requests of each key; ``/down`` answers ``down_status``.  Records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.failures: dict[str, int] = {}
        self.down_status = 500
        self.release = threading.Event()  # ends the /slow requests
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                upstream.requests.append((self.command, self.path, headers))
                path = urlsplit(self.path).path
                status, body = 200, json.dumps({"path": self.path, "headers": headers})
                if path.startswith("/flaky/"):
                    fail = int(parse_qs(urlsplit(self.path).query)["fail"][0])
                    seen = upstream.failures[path] = upstream.failures.get(path, 0) + 1
                    if seen <= fail:
                        status, body = 503, "try again"
                elif path == "/down":
                    status = upstream.down_status
                elif path == "/slow":
                    upstream.release.wait(10)
                data = body.encode()
                self.send_response(status)
                if path.startswith("/cacheable/"):
                    self.send_header("cache-control", "max-age=60")
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one  # noqa: N815

            def log_message(self, *args):
                pass

        self.handler = Handler

    def hits(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if urlsplit(p).path == path)


class ForwardProxy:
    """An HTTP forward proxy: relays ``GET http://host/path`` and records the URL."""

    def __init__(self) -> None:
        self.relayed: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def relay(self):
                proxy.relayed.append(self.path)
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if not k.lower().startswith("proxy-") and k.lower() != "connection"}
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                conn.request(self.command, parts.path + (f"?{parts.query}" if parts.query
                                                         else ""), body, headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in ("content-length", "connection",
                                            "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = relay  # noqa: N815

            def log_message(self, *args):
                pass

        self.handler = Handler


@pytest.fixture(scope="module")
def upstream():
    service = Upstream()
    with serve(service.handler) as server:
        service.url = f"http://127.0.0.1:{server.server_port}"
        service.local = f"http://localhost:{server.server_port}"  # another host, same server
        yield service


def _caller(app_id: str, **extra) -> dict:
    return app_config(app_id, folder="outbound", env={"API_KEY": "k-123"}, logger={
        "level": "debug"}, interceptors=[
        "hooks:short_circuit",
        "hooks:timeout_from_header",
        {"use": "watt.interceptors:Retry",
         "options": {"attempts": 3, "backoff": 0.01, "hosts": ["127.0.0.1"]}},
        {"use": "watt.interceptors:CircuitBreaker",
         "options": {"failures": 3, "reset": 0.5, "hosts": ["localhost"]}},
        {"use": "watt.interceptors:SetHeaders",
         "options": {"env": {"x-api-key": "API_KEY"}, "hosts": ["127.0.0.1"]}},
    ], **extra)


@pytest.fixture(scope="module")
def rt(upstream):
    config = {
        "entrypoint": "caller",
        "mesh": {"interceptors": ["hooks:record"]},
        "telemetry": {"exporter": {"type": "memory"}, "propagators": ["tracecontext", "b3"]},
        "httpCache": {},
        "applications": [
            _caller("caller", isolation="subinterpreter"),
            _caller("callproc", isolation="process"),
            app_config("target", folder="outbound"),
        ],
    }
    with RuntimeHandle(config) as handle:
        yield handle


def call(rt, client: str, url: str, caller: str = "caller", headers=(), **params) -> dict:
    query = urlencode({"client": client, "url": url, **params,
                       "h": [f"{k}:{v}" for k, v in headers]}, doseq=True)
    response = rt.inject(caller, "GET", f"/call?{query}")
    assert response.status == 200, response.text
    return response.json()


def seen(rt, caller: str = "caller") -> list[dict]:
    return rt.inject(caller, "GET", "/seen").json()


# -- every client, mesh and external -------------------------------------------------------
@pytest.mark.parametrize("client", MESH_CLIENTS)
def test_a_mesh_call_passes_through_the_interceptors(rt, client):
    seen(rt)
    reply = call(rt, client, "http://target.plt.local/echo?x=1")
    assert reply.get("error") is None, reply
    assert reply["status"] == 200
    echoed = json.loads(reply["body"])
    assert echoed["app"] == "target"
    assert echoed["headers"]["x-intercepted"] == "caller"  # hooks:record set it
    assert "x-api-key" not in echoed["headers"]  # SetHeaders is for 127.0.0.1 only
    [record] = seen(rt)
    assert record["url"] == "http://target.plt.local/echo?x=1" and record["mesh"] is True
    assert record["async"] is (client in ("httpx", "aiohttp", "fetch", "mesh-transport"))


@pytest.mark.parametrize("caller", ["caller", "callproc"])
@pytest.mark.parametrize("client", CLIENTS)
def test_an_external_call_passes_through_the_interceptors(rt, upstream, client, caller):
    seen(rt, caller)
    reply = call(rt, client, f"{upstream.url}/echo?c={client}", caller)
    assert reply.get("error") is None, reply
    assert reply["status"] == 200
    received = json.loads(reply["body"])["headers"]
    assert received["x-intercepted"] == caller
    assert received["x-api-key"] == "k-123"  # from the application's environment
    assert received["traceparent"].startswith("00-")  # a CLIENT span is its parent
    assert received["b3"].split("-")[1] == received["traceparent"].split("-")[2]
    [record] = seen(rt, caller)
    assert record["mesh"] is False and record["status"] == 200 and record["attempts"] == 1


@pytest.mark.parametrize("client", MESH_CLIENTS)
def test_an_interceptor_answers_without_sending(rt, upstream, client):
    url = ("http://target.plt.local/echo" if client in ("fetch", "mesh-transport")
           else f"{upstream.url}/never")
    reply = call(rt, client, url, headers=[("x-short", "1")])
    assert reply.get("error") is None, reply
    assert (reply["status"], reply["body"], reply["from"]) == (299, "short", "hook")
    assert upstream.hits("/never") == 0


@pytest.mark.parametrize("client", ["httpx", "requests", "aiohttp", "urllib"])
def test_an_error_in_an_interceptor_names_it(rt, upstream, client):
    reply = call(rt, client, f"{upstream.url}/echo", headers=[("x-break", "1")])
    assert reply["code"] == "WATT_INTERCEPTOR_FAILED", reply
    assert "'hooks:short_circuit'" in reply["error"] and "broken on purpose" in reply["error"]


TIMEOUTS = {"httpx": "httpx.ReadTimeout", "httpx-sync": "httpx.ReadTimeout",
            "requests": "requests.exceptions.ReadTimeout",
            "urllib3": "urllib3.exceptions.ReadTimeoutError", "urllib": "TimeoutError",
            "aiohttp": "TimeoutError"}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_timeout_set_by_an_interceptor_applies_to_the_client(rt, upstream, client):
    upstream.release.clear()
    try:  # POST: not retried, so one wait
        reply = call(rt, client, f"{upstream.url}/slow", method="POST",
                     headers=[("x-timeout", "0.3")])
    finally:
        upstream.release.set()
    assert reply.get("error") is not None, reply
    assert any(t.endswith(TIMEOUTS[client]) for t in reply["error_types"]), reply


# -- retry and circuit breaker under injected failures --------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
def test_retry_recovers_from_failures_of_an_idempotent_request(rt, upstream, client):
    path = f"/flaky/{client}"
    reply = call(rt, client, f"{upstream.url}{path}?fail=2")
    assert reply.get("error") is None, reply
    assert reply["status"] == 200
    assert upstream.hits(path) == 3  # two 503s, then the answer
    assert seen(rt)[-1]["attempts"] == 3


def test_retry_gives_up_after_its_attempts_and_leaves_posts_alone(rt, upstream):
    reply = call(rt, "httpx", f"{upstream.url}/flaky/many?fail=10")
    assert reply["status"] == 503 and upstream.hits("/flaky/many") == 3
    reply = call(rt, "requests", f"{upstream.url}/flaky/post?fail=1", method="POST")
    assert reply["status"] == 503 and upstream.hits("/flaky/post") == 1


def test_retry_after_a_refused_connection_raises_the_clients_own_error(rt):
    seen(rt)
    with serve(http.server.BaseHTTPRequestHandler) as server:
        port = server.server_port  # a port that was just free, now closed again
    reply = call(rt, "requests", f"http://127.0.0.1:{port}/x", timeout="2")
    assert "requests.exceptions.ConnectionError" in reply["error_types"], reply
    assert seen(rt) == []  # the record hook saw no response (the send failed)


def test_circuit_breaker_opens_per_host_then_lets_a_probe_through(rt, upstream):
    upstream.down_status = 500
    for _ in range(3):
        assert call(rt, "httpx", f"{upstream.local}/down")["status"] == 500
    reply = call(rt, "requests", f"{upstream.local}/down")
    assert reply["code"] == "WATT_CIRCUIT_OPEN", reply
    assert "localhost" in reply["error"] and "CircuitBreaker" in reply["error"]
    assert upstream.hits("/down") == 3  # refused without a request
    # Another host is not affected.
    assert call(rt, "httpx", f"{upstream.url}/echo")["status"] == 200
    upstream.down_status = 200
    # After `reset`, one call goes through; its success closes the circuit.
    wait_for(lambda: call(rt, "httpx", f"{upstream.local}/down").get("status") == 200, 10)
    assert call(rt, "urllib", f"{upstream.local}/down")["status"] == 200


# -- external calls observed -----------------------------------------------------------------
def client_span(rt, reply: dict) -> dict:
    """The CLIENT span whose id the upstream received as the traceparent's parent."""
    span_id = json.loads(reply["body"])["headers"]["traceparent"].split("-")[2]

    def find():
        return next((s for s in rt.spans() if s["spanId"] == span_id), None)

    wait_for(lambda: find() is not None)
    return find()


@pytest.mark.parametrize("client", ["httpx", "requests"])  # an async and a sync client
def test_an_external_call_gives_a_span_a_metric_sample_and_a_debug_line(rt, upstream,
                                                                        client):
    assert call(rt, client, "http://target.plt.local/echo")["status"] == 200  # mesh: counted
    reply = call(rt, client, f"{upstream.url}/echo?observe={client}")
    span = client_span(rt, reply)
    assert span["kind"] == "CLIENT" and span["name"] == "GET 127.0.0.1"
    assert span["attributes"]["url.full"] == f"{upstream.url}/echo?observe={client}"
    assert span["attributes"]["http.response.status_code"] == 200
    metrics = rt.metrics()
    sample = [line for line in metrics.splitlines()
              if line.startswith("http_client_request_duration_seconds_count{")
              and 'applicationId="caller"' in line and 'host="127.0.0.1"' in line
              and 'method="GET"' in line and 'status_code="200"' in line]
    assert sample and float(sample[0].rsplit(" ", 1)[1]) >= 1
    assert any('host="target.plt.local"' in line for line in metrics.splitlines()
               if line.startswith("http_client_request_duration_seconds_count{"))
    wait_for(lambda: any(
        r.get("outbound", {}).get("url") == f"{upstream.url}/echo?observe={client}"
        and r.get("reqId") for r in rt.logs(app="caller", level="debug")))


def test_an_external_call_that_cannot_connect_records_the_clients_exception(rt):
    with socket.socket() as probe:  # a port nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/refused"
    assert call(rt, "httpx", url).get("error")

    def failed():
        return next((s for s in rt.spans() if s["attributes"].get("url.full") == url), None)

    wait_for(lambda: failed() is not None)
    span = failed()
    assert span["status"]["code"] == "ERROR" and "ConnectError" in span["status"]["message"]
    [event] = span["events"]
    assert event["attributes"]["exception.type"] == "ConnectError"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]


# -- external calls cached ------------------------------------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
def test_a_cacheable_external_get_is_answered_from_the_cache_the_second_time(rt, upstream,
                                                                         client):
    url = f"{upstream.url}/cacheable/{client}"
    first = call(rt, client, url)
    assert first["status"] == 200 and upstream.hits(f"/cacheable/{client}") == 1, first
    second = call(rt, client, url)
    assert second.get("error") is None, second
    assert (second["status"], second["body"]) == (200, first["body"])
    assert upstream.hits(f"/cacheable/{client}") == 1  # the store answered
    # The same invalidation as for mesh calls: the next GET goes out again.
    rt.inject("caller", "GET", f"/invalidate?{urlencode({'url': url})}")
    assert call(rt, client, url)["status"] == 200
    assert upstream.hits(f"/cacheable/{client}") == 2


def test_uncacheable_answers_and_other_methods_always_go_out(rt, upstream):
    before = upstream.hits("/echo")
    for _ in range(2):
        call(rt, "httpx", f"{upstream.url}/echo?uncached=1")  # no freshness, no validator
        call(rt, "requests", f"{upstream.url}/cacheable/post", method="POST")
    assert upstream.hits("/echo") == before + 2 and upstream.hits("/cacheable/post") == 2


# -- proxies -------------------------------------------------------------------------------------
@pytest.mark.parametrize("client", ["httpx", "requests", "urllib", "aiohttp"])
def test_env_proxies_for_external_hosts_never_for_the_mesh(upstream, client, proxied):
    rt, proxy = proxied
    proxy.relayed.clear()
    via = call(rt, client, f"{upstream.url}/echo?via=proxy")
    assert via["status"] == 200, via
    assert proxy.relayed == [f"{upstream.url}/echo?via=proxy"]
    direct = call(rt, client, f"{upstream.local}/echo?via=direct")  # NO_PROXY=localhost
    assert direct["status"] == 200, direct
    mesh = call(rt, client, "http://caller.plt.local/echo")
    assert mesh["status"] == 200 and json.loads(mesh["body"])["app"] == "caller", mesh
    assert proxy.relayed == [f"{upstream.url}/echo?via=proxy"]


@pytest.fixture(scope="module")
def proxied():
    proxy = ForwardProxy()
    with serve(proxy.handler) as server:
        env = {"HTTP_PROXY": f"http://127.0.0.1:{server.server_port}", "NO_PROXY": "localhost"}
        with RuntimeHandle({"applications": [app_config("caller", folder="outbound",
                                                        env=env)]}) as handle:
            yield handle, proxy


# -- configuration --------------------------------------------------------------------------
@pytest.mark.parametrize("entry,why", [
    ("hooks:not_async", "not an async callable"),
    ("hooks:missing", "cannot be loaded"),
    ({"use": "watt.interceptors:Retry", "options": {"tries": 2}}, "bad options"),
])
def test_a_bad_interceptor_stops_the_start_with_its_name(entry, why):
    config = {"applications": [app_config("bad", folder="outbound", interceptors=[entry])]}
    with pytest.raises(WattError) as failed:
        with RuntimeHandle(config):
            pass
    assert "WATT_INTERCEPTOR_INVALID" in str(failed.value)
    assert why in str(failed.value)
    # the code once (not "CODE: InterceptorError: CODE: ..."), and no traceback of Watt's own
    assert str(failed.value).count("WATT_INTERCEPTOR_INVALID") == 1
    assert "Traceback" not in str(failed.value), str(failed.value)


# -- the shipped interceptors on their own (no worker) ------------------------------------------
def run(hook, request: Request, answers: list):
    """Drive ``hook`` with a call_next that answers from ``answers`` (a status, or an
    exception to fail the send); returns (response or exception, sends)."""
    sends = []

    async def call_next(req):
        sends.append(req.timeout)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise SendError(answer)
        return Response(answer, [("retry-after", "0")] if answer == 429 else [])

    async def main():
        try:
            return await hook(request, call_next)
        except (SendError, InterceptorError) as exc:
            return exc

    return asyncio.run(main()), sends


def test_retry_unit():
    retry = Retry(attempts=3, backoff=0, statuses=(503, 429))
    result, sends = run(retry, Request("GET", "http://x/"), [ConnectionError(), 429, 200])
    assert result.status == 200 and len(sends) == 3
    result, sends = run(retry, Request("GET", "http://x/"), [503, 503, 503])
    assert result.status == 503 and len(sends) == 3
    result, sends = run(retry, Request("PUT", "http://x/", body=None), [503])
    assert result.status == 503 and len(sends) == 1  # a streamed body is sent once
    result, _ = run(retry, Request("GET", "http://x/"), [OSError("a"), OSError("b"),
                                                         OSError("c")])
    assert isinstance(result, SendError) and str(result.original) == "c"


def test_circuit_breaker_unit():
    breaker = CircuitBreaker(failures=2, reset=60)
    for _ in range(2):
        run(breaker, Request("GET", "http://a/"), [500])
    result, sends = run(breaker, Request("GET", "http://a/"), [200])
    assert isinstance(result, InterceptorError) and result.code == "WATT_CIRCUIT_OPEN"
    assert sends == [] and breaker.state("a") == "open"
    assert run(breaker, Request("GET", "http://b/"), [200])[0].status == 200
    breaker.reset = 0  # the reset time has passed: one probe decides
    assert breaker.state("a") == "half-open"
    run(breaker, Request("GET", "http://a/"), [ConnectionError()])
    assert breaker.state("a") == "half-open"  # reopened (reset 0: at once half-open)
    assert run(breaker, Request("GET", "http://a/"), [204])[0].status == 204
    assert breaker.state("a") == "closed"


def test_default_timeout_and_headers_unit(monkeypatch):
    _, sends = run(DefaultTimeout(2.5), Request("GET", "http://x/"), [200])
    _, kept = run(DefaultTimeout(2.5), Request("GET", "http://x/", timeout=9), [200])
    assert sends == [2.5] and kept == [9]
    monkeypatch.setenv("KEY_FOR_TEST", "secret")
    hook = SetHeaders({"x-a": "1"}, env={"x-key": "KEY_FOR_TEST"}, hosts=["*.example.com"])
    request = Request("GET", "http://api.example.com/", headers=[("x-a", "mine")])
    run(hook, request, [200])
    assert request.headers.get("x-a") == "mine" and request.headers.get("X-Key") == "secret"
    other = Request("GET", "http://example.org/")
    run(hook, other, [200])
    assert "x-key" not in other.headers
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE"):
        SetHeaders(env={"x-key": "NOT_SET_ANYWHERE"})
