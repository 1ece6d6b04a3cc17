"""Watt's own HTTP/1.1 engine (watt/http1.py) on raw sockets: what clients other
than httpx send — pipelining, HTTP/1.0, HEAD, chunked bodies both ways,
Expect: 100-continue, keep-alive — answered as HTTP/1.1 requires."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from support import app_config

from watt.testing import RuntimeHandle


@pytest.fixture(scope="module", params=["direct", "forwarded"])
def rt(request):
    """Both ways of the engine: connections served in the worker (server.direct, the
    default) and every request forwarded through the main interpreter."""
    config = {"applications": [app_config("a")],
              "server": {"direct": request.param == "direct"}}
    with RuntimeHandle(config, engine="watt") as handle:
        assert (handle.runtime._engine.direct is not None) == (request.param == "direct")
        yield handle


def _connect(rt) -> socket.socket:
    port = int(rt.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, dict, bytes]:
    """One response from ``sock`` (content-length or chunked), leaving the rest in
    ``buffer``: ``(status line, headers, body)``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        assert data, f"connection closed mid-head: {bytes(buffer)!r}"
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        body = bytearray()
        while True:
            while b"\r\n" not in buffer:
                buffer += sock.recv(65536)
            size_line, _, rest = bytes(buffer).partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            buffer[:] = rest[size + 2:]
            if size == 0:
                return status, headers, bytes(body)
    length = int(headers.get(b"content-length", b"0"))
    while len(buffer) < length:
        buffer += sock.recv(65536)
    body, buffer[:] = bytes(buffer[:length]), buffer[length:]
    return status, headers, body


def test_pipelined_requests_are_answered_in_order_on_one_connection(rt):
    with _connect(rt) as sock:
        sock.sendall(b"".join(
            b"GET /headers?i=%d HTTP/1.1\r\nHost: x\r\nX-I: %d\r\n\r\n" % (i, i)
            for i in range(5)))
        buffer = bytearray()
        for i in range(5):
            status, _, body = _read_response(sock, buffer)
            assert status == b"HTTP/1.1 200 OK"
            assert json.loads(body)["x-i"] == str(i)


def test_http_1_0_and_keep_alive(rt):
    with _connect(rt) as sock:  # HTTP/1.0: answered, then closed
        sock.sendall(b"GET /whoami HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.0 200 OK\r\n")
        assert b"connection: close" in data.lower()
    with _connect(rt) as sock:  # HTTP/1.0 asking for keep-alive keeps it
        sock.sendall(b"GET /whoami HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = _read_response(sock, bytearray())
        assert status == b"HTTP/1.0 200 OK" and headers[b"connection"] == b"keep-alive"
        sock.sendall(b"GET /whoami HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert _read_response(sock, bytearray())[0] == b"HTTP/1.0 200 OK"
    with httpx.Client() as client:  # kept alive: one connection for all
        replies = [client.get(rt.url + "/whoami") for _ in range(3)]
        assert all(r.status_code == 200 for r in replies)


def test_head_has_no_body(rt):
    with _connect(rt) as sock:
        sock.sendall(b"HEAD /download?size=5000 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /chunks?n=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 5000" in head
        buffer[:] = rest
        status, _, body = _read_response(sock, buffer)  # the next response comes right after
        assert status == b"HTTP/1.1 200 OK" and body == b"part0;"


def test_chunked_request_and_response_bodies(rt):
    with _connect(rt) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                     b"GET /chunks?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        status, _, body = _read_response(sock, buffer)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["bytes"] == 11
        status, headers, body = _read_response(sock, buffer)
        assert headers[b"transfer-encoding"] == b"chunked"
        assert body == b"part0;part1;part2;"


def test_expect_100_continue(rt):
    with _connect(rt) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"data")
        status, _, body = _read_response(sock, bytearray())
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["bytes"] == 4


def test_a_date_header_and_no_duplicate_framing_headers(rt):
    reply = httpx.get(rt.url + "/download?size=10")
    assert reply.headers["date"].endswith("GMT")
    assert reply.headers.get_list("content-length") == ["10"]
    assert "transfer-encoding" not in reply.headers


def test_too_many_header_fields_get_431():
    config = {"limits": {"maxHeaderCount": 10}, "applications": [app_config("a")]}
    with RuntimeHandle(config, engine="watt") as handle:
        with _connect(handle) as sock:
            fields = b"".join(b"X-F%d: v\r\n" % i for i in range(11))
            sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nX-A: v\r\n\r\n")
            assert _read_response(sock, bytearray())[0] == b"HTTP/1.1 200 OK"  # 2 fields
        with _connect(handle) as sock:
            sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 431")
