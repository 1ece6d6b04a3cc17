"""Direct mode: the entrypoint's connections served in its subinterpreter workers
(watt/http1_direct.py accepts and hands them over, watt/worker/direct.py answers).

What the application sees must not depend on the mode; requests the worker's fast
path does not take, and connections of a worker that stops, go back to the main
interpreter without the client noticing."""

from __future__ import annotations

import json
import socket

import pytest
from support import app_config, wait_for
from test_http1 import _read_response

from watt.config import load_config
from watt.edge.info import make_edge
from watt.http1_direct import direct_refusal
from watt.testing import RuntimeHandle


def _connect(rt) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(rt.url.rsplit(":", 1)[1])), timeout=15)


def _ask(sock, buffer: bytearray, request: bytes) -> tuple[bytes, dict, bytes]:
    sock.sendall(request)
    return _read_response(sock, buffer)


@pytest.fixture(scope="module")
def rt():
    with RuntimeHandle({"applications": [app_config("a")]}, engine="watt") as handle:
        yield handle


def test_the_scope_is_the_same_served_in_the_worker_or_forwarded():
    request = (b"POST /p%20q/r?x=1&y=%20 HTTP/1.1\r\nHost: example.test\r\n"
               b"X-Watt-User: forged\r\nX-Forwarded-For: 10.9.9.9\r\nX-Other: kept\r\n"
               b"Content-Length: 5\r\n\r\nhello")
    seen = {}
    for direct in (True, False):
        config = {"applications": [app_config("s", "scope_dump")],
                  "server": {"direct": direct}}
        with RuntimeHandle(config, engine="watt") as handle:
            assert (handle.runtime._engine.direct is not None) is direct
            with _connect(handle) as sock:
                status, _, body = _ask(sock, bytearray(), request)
            assert status == b"HTTP/1.1 200 OK"
            scope = json.loads(body)
        scope["client"][1] = scope["server"][1] = 0  # ports differ from run to run
        scope["headers"] = [h for h in scope["headers"] if h[0] != "x-request-id"]
        seen[direct] = scope
    assert seen[True] == seen[False]
    scope = seen[True]
    assert scope["path"] == "/p q/r" and scope["query_string"] == "x=1&y=%20"
    assert scope["body"] == "hello" and scope["state"] == {"started": "yes"}
    names = [name for name, _ in scope["headers"]]
    assert "x-watt-user" not in names and ["x-forwarded-for", "127.0.0.1"] in scope["headers"]


def test_connections_live_in_the_worker_and_survive_a_rolling_restart(rt):
    engine = rt.runtime._engine
    with _connect(rt) as sock:
        buffer = bytearray()
        _, _, body = _ask(sock, buffer, b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        before = json.loads(body)["interpreter"]
        assert not engine.connections and engine.direct.active == 1
        rt._call(rt.runtime.restart("a"))
        # The same connection, now served by the new worker (handed back, then on).
        status, _, body = _ask(sock, buffer, b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == b"HTTP/1.1 200 OK"
        assert json.loads(body)["interpreter"] != before
        assert not engine.connections and engine.direct.active == 1
    wait_for(lambda: engine.direct.active == 0)


def test_what_the_fast_path_does_not_take_goes_on_in_the_main_engine(rt):
    engine = rt.runtime._engine
    with _connect(rt) as sock:
        buffer = bytearray()
        status, _, _ = _ask(sock, buffer, b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == b"HTTP/1.1 200 OK"
        # A chunked upload, and a plain request pipelined behind it in the same write.
        _, _, body = _ask(sock, buffer, b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                          b"GET /whoami?after=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(body)["bytes"] == 3
        status, _, body = _read_response(sock, buffer)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["query"] == "after=1"
        assert len(engine.connections) == 1 and engine.direct.active == 0
    with _connect(rt) as sock:  # a body over the worker's limit streams through the main side
        size = 300 * 1024
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
        _, _, body = _ask(sock, bytearray(), head + b"z" * size)
        assert json.loads(body)["bytes"] == size
    with _connect(rt) as sock:  # malformed: the main engine's 400
        status, _, _ = _ask(sock, bytearray(), b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 400")


def test_answers_made_in_the_worker(rt):
    with _connect(rt) as sock:
        buffer = bytearray()
        status, headers, body = _ask(sock, buffer, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 500")
        assert json.loads(body)["code"] == "WATT_APP_UNHANDLED_ERROR"
        assert b"connection" not in headers  # the request was read whole: it goes on
        status, _, _ = _ask(sock, buffer, b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == b"HTTP/1.1 200 OK"
    with _connect(rt) as sock:  # streamed (chunked), then HEAD on the same connection
        buffer = bytearray()
        _, headers, body = _ask(sock, buffer, b"GET /chunks?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert headers[b"transfer-encoding"] == b"chunked" and body == b"part0;part1;"
        sock.sendall(b"HEAD /whoami HTTP/1.1\r\nHost: x\r\n\r\nGET /whoami HTTP/1.1\r\n\r\n")
        status, headers, body = _read_response_head_only(sock, buffer)
        assert status == b"HTTP/1.1 200 OK"  # and no body: the next answer follows at once
        status, _, body = _read_response(sock, buffer)
        assert json.loads(body)["method"] == "GET"


def _read_response_head_only(sock, buffer: bytearray):
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    status, *lines = head.split(b"\r\n")
    return status, {k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(b":") for line in lines)}, b""


def test_request_timeout_in_the_worker():
    config = {"applications": [app_config("a")], "limits": {"requestTimeout": 200}}
    with RuntimeHandle(config, engine="watt") as handle:
        with _connect(handle) as sock:
            buffer = bytearray()
            status, _, body = _ask(sock, buffer,
                                   b"GET /slow?delay=0.6 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 504")
            assert json.loads(body)["code"] == "WATT_REQUEST_TIMEOUT"

            def finished() -> bool:  # the app's late answer is dropped, not an error
                _, _, answer = _ask(sock, buffer, b"GET /in-flight HTTP/1.1\r\nHost: x\r\n\r\n")
                return json.loads(answer)["in_flight"] == 0

            wait_for(finished, timeout=10)
        assert not handle.logs(level="error")


@pytest.mark.parametrize(("extra", "reason"), [
    ({"server": {"direct": False}}, "server.direct is false"),
    ({"limits": {"maxConcurrency": 4}}, "limits.maxConcurrency"),
    ({"server": {"rateLimit": {"max": 5}}}, "an edge stage"),
    ({"server": {"cors": {"origin": "https://a.test"}},
      "applications": [app_config("a", cors={"origin": "https://b.test"})]}, "per application"),
    ({"httpCache": {"applications": ["a"]}}, "cached"),
])
def test_what_keeps_requests_forwarded(tmp_path, extra, reason):
    raw = {"applications": [app_config("a")]} | extra
    config = load_config(raw, env={})
    refusal = direct_refusal(config, "watt", make_edge(config))
    assert refusal is not None and reason in refusal
    plain = load_config({"applications": [app_config("a")]}, env={})
    assert direct_refusal(plain, "watt", make_edge(plain)) is None
    assert "granian" in direct_refusal(plain, "granian", None)


def test_connections_a_dying_worker_never_took_go_to_another_worker(tmp_path):
    import concurrent.futures
    import time

    import httpx

    config = {"applications": [app_config("b", workers=2)]}
    with RuntimeHandle(config, engine="watt") as rt:
        workers = rt.runtime.pools["b"].workers
        flag, blocking = tmp_path / "go", tmp_path / "go.blocking"
        deadline = time.monotonic() + 20
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            blocked = pool.submit(httpx.get, rt.url + "/block-then-exit",
                                  params={"flag": str(flag)}, timeout=30)
            while not (blocking.exists() and blocking.read_text()) and time.monotonic() < deadline:
                time.sleep(0.01)  # bounded wait for the app to write which worker blocks
            stuck = next(w for w in workers if str(w.interpreter_id) == blocking.read_text())
            alive = next(w for w in workers if w is not stuck)
            # Held open, so each new one goes to the worker with fewer: some to the stuck
            # one, whose loop cannot take them.
            socks = [_connect(rt) for _ in range(3)]
            try:
                wait_for(lambda: sum(rt.runtime._engine.direct.handed.values()) == 4)
                assert rt.runtime._engine.direct.handed[stuck] >= 2  # its request + 1 or more
                for sock in socks:
                    sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
                flag.touch()
                answers = [_read_response(sock, bytearray()) for sock in socks]
            finally:
                for sock in socks:
                    sock.close()
            assert blocked.result().status_code == 502
    assert [status for status, _, _ in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert {json.loads(body)["interpreter"] for _, _, body in answers} == {alive.interpreter_id}


def test_deadlines_and_a_large_answer_in_the_worker():
    config = {"applications": [app_config("a")],
              "limits": {"keepAliveTimeout": 300, "headerTimeout": 300}}
    with RuntimeHandle(config, engine="watt") as handle:
        assert handle.runtime._engine.direct is not None
        with _connect(handle) as sock:  # more than the socket buffers hold: flow control
            size = 8 * 1024 * 1024
            _, headers, body = _ask(sock, bytearray(),
                                    b"GET /download?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
            assert len(body) == size == int(headers[b"content-length"])
            assert sock.recv(1) == b""  # then idle past keepAliveTimeout: closed
        with _connect(handle) as sock:  # a head that never ends: cut at headerTimeout
            sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n")
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass  # aborted, as the main engine does


@pytest.mark.parametrize("head", [
    b"POST /upload HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /upload HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
    b"POST /upload HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
    b"GET /whoami HTTP/1.1\r\nX-A: 1\nContent-Length: 5\r\n\r\nhello",
    b"GET /whoami HTTP/1.1\r\nX-A: 1\rX-B: 2\r\n\r\n",
    b"GET /who\x00ami HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_ambiguous_heads_are_left_to_the_strict_parser(rt, head):
    """What request smuggling hides in (two lengths, a space before the colon, a
    signed length, a bare LF or CR, a NUL) never reaches the app through the fast
    path: the main engine's parser refuses it."""
    with _connect(rt) as sock:
        status, _, _ = _ask(sock, bytearray(), head)
    assert status.startswith(b"HTTP/1.1 400")


def test_a_request_that_arrives_a_byte_at_a_time(rt):
    request = (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
               b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with _connect(rt) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            sock.sendall(request[i:i + 1])
        buffer = bytearray()
        _, _, body = _read_response(sock, buffer)
        assert json.loads(body)["bytes"] == 5
        _, headers, body = _read_response(sock, buffer)
        assert json.loads(body)["method"] == "GET" and headers[b"connection"] == b"close"
        assert sock.recv(1) == b""  # and closed, as asked


def test_cors_and_security_headers_answer_the_same_in_the_worker():
    """The header-only edge stages run in the worker (same classes, same settings), so
    these configurations keep direct mode; the answers match the forwarded ones."""
    requests = [
        b"OPTIONS /whoami HTTP/1.1\r\nHost: x\r\nOrigin: https://a.test\r\n"
        b"Access-Control-Request-Method: POST\r\n\r\n",
        b"OPTIONS /whoami HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.test\r\n"
        b"Access-Control-Request-Method: POST\r\n\r\n",
        b"GET /whoami HTTP/1.1\r\nHost: x\r\nOrigin: https://a.test\r\n\r\n",
        b"GET /whoami HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.test\r\n\r\n",
        b"GET /boom HTTP/1.1\r\nHost: x\r\nOrigin: https://a.test\r\n\r\n",
    ]
    seen = {}
    for direct in (True, False):
        config = {"applications": [app_config("a")],
                  "server": {"direct": direct, "securityHeaders": True,
                             "cors": {"origin": "https://a.test", "maxAge": 600}}}
        with RuntimeHandle(config, engine="watt") as handle:
            assert (handle.runtime._engine.direct is not None) is direct
            answers = []
            for request in requests:
                with _connect(handle) as sock:
                    status, headers, body = _ask(sock, bytearray(), request)
                headers.pop(b"date")
                if b"problem" in headers.get(b"content-type", b""):
                    body = json.loads(body)["code"].encode()
                elif status.startswith(b"HTTP/1.1 200"):
                    body = b"app"  # the worker's pid and interpreter differ, so its length
                    headers.pop(b"content-length")
                answers.append((status, sorted(headers.items()), body))
            seen[direct] = answers
    assert seen[True] == seen[False]
    preflight, refused, allowed, other, failed = seen[True]
    assert preflight[0].startswith(b"HTTP/1.1 204")
    assert (b"access-control-max-age", b"600") in preflight[1]
    assert refused[0].startswith(b"HTTP/1.1 403") and refused[2] == b"WATT_CORS_FORBIDDEN"
    assert (b"access-control-allow-origin", b"https://a.test") in allowed[1]
    assert (b"x-content-type-options", b"nosniff") in allowed[1]
    assert not any(name.startswith(b"access-control-") for name, _ in other[1])
    assert failed[0].startswith(b"HTTP/1.1 500")
    assert (b"access-control-allow-origin", b"https://a.test") in failed[1]
