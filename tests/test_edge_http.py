"""The edge at work through real runtimes, on the three engines: headers only Watt may
set are stripped, x-forwarded-* are believed from trusted proxies only, a rate-limit
burst gets 429, a CORS preflight is answered at the edge, security headers are added."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from support import APPS

from watt.testing import RuntimeHandle

CONFIG = {
    "server": {
        "trustedProxies": ["127.0.0.2"],
        "userHeader": "x-user",
        "rateLimit": {"routes": [{"prefix": "/limited", "max": 3, "timeWindow": 60000}]},
        "securityHeaders": True,
    },
    "applications": [{
        "id": "api", "path": str(APPS / "edge_scope"), "app": "main:app",
        "cors": {"origin": ["https://app.example"], "maxAge": 600, "credentials": True,
                 "exposedHeaders": ["x-total"]},
    }],
}


@pytest.fixture(scope="module", params=["watt", "granian", "hypercorn"])
def rt(request):
    with RuntimeHandle(CONFIG, engine=request.param) as handle:
        yield handle


def seen(response) -> tuple[dict, dict]:
    body = response.json()
    return dict(body["headers"]), body


def test_headers_only_watt_may_set_are_stripped(rt):
    response = httpx.get(rt.url + "/x", timeout=30, headers={
        "x-watt-user": "admin", "x-watt-anything": "1", "x-user": "root",
        "x-forwarded-for": "1.2.3.4", "x-forwarded-proto": "https", "forwarded": "for=1.2.3.4"})
    headers, body = seen(response)
    assert not any(name.startswith("x-watt-") for name in headers)
    assert "x-user" not in headers and "forwarded" not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert body["client"][0] == "127.0.0.1" and body["scheme"] == "http"
    assert "strict-transport-security" not in response.headers  # plain HTTP: no HSTS
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_trusted_proxy_speaks_for_the_client(rt):
    proxy = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30)
    with proxy:
        response = proxy.get(rt.url + "/x", headers={
            "x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "https",
            "x-watt-user": "admin"})
    headers, body = seen(response)
    assert body["client"][0] == "198.51.100.7" and body["scheme"] == "https"
    assert headers["x-forwarded-for"] == "198.51.100.7, 127.0.0.2"
    assert "x-watt-user" not in headers  # even from a trusted proxy
    assert response.headers["strict-transport-security"].startswith("max-age=15552000")


def test_a_burst_past_the_rate_limit_gets_429_with_retry_after(rt):
    with httpx.Client(timeout=30) as client:
        codes = [client.get(rt.url + "/limited/a").status_code for _ in range(3)]
        refused = client.get(rt.url + "/limited/b")
        other = client.get(rt.url + "/free")
    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.json()["code"] == "WATT_RATE_LIMITED"
    assert refused.headers["x-content-type-options"] == "nosniff"  # stages before it still ran
    assert other.status_code == 200  # another prefix: its own (unlimited) bucket


def test_a_cors_preflight_is_answered_at_the_edge(rt):
    asked = {"origin": "https://app.example", "access-control-request-method": "POST",
             "access-control-request-headers": "content-type, authorization"}
    response = httpx.options(rt.url + "/items", headers=asked, timeout=30)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type, authorization"
    assert response.headers["access-control-max-age"] == "600"
    assert "x-total" not in response.headers  # the application never saw it
    refused = httpx.options(rt.url + "/items", timeout=30,
                            headers=dict(asked, origin="https://evil.example"))
    assert refused.status_code == 403 and refused.json()["code"] == "WATT_CORS_FORBIDDEN"


def test_cors_headers_on_an_actual_response(rt):
    response = httpx.get(rt.url + "/items", headers={"origin": "https://app.example"},
                         timeout=30)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-expose-headers"] == "x-total"
    assert "origin" in response.headers["vary"].lower()
    other = httpx.get(rt.url + "/items", headers={"origin": "https://evil.example"}, timeout=30)
    assert "access-control-allow-origin" not in other.headers


def test_websockets_pass_the_edge_too(rt):
    from websockets.sync.client import connect

    ws_url = rt.url.replace("http://", "ws://")
    with connect(ws_url + "/ws", open_timeout=30,
                 additional_headers={"x-watt-user": "admin", "x-user": "root"}) as ws:
        seen_ws = json.loads(ws.recv(timeout=30))
    names = {name for name, _ in seen_ws["headers"]}
    assert "x-watt-user" not in names and "x-user" not in names and seen_ws["scheme"] == "ws"
    for _ in range(3):  # the bucket of /limited is empty after the burst test, or is now
        try:
            with connect(ws_url + "/limited/ws", open_timeout=30) as ws:
                ws.recv(timeout=30)
        except websockets.exceptions.InvalidStatus as exc:
            refused = exc.response.status_code
            break
    else:
        pytest.fail("a rate-limited WebSocket handshake was never refused")
    assert refused in (403, 429)  # 429 where the engine can answer the handshake with HTTP
