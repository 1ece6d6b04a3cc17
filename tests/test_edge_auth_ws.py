"""WebSocket authentication at the edge (``auth.routes[].websocket``): a real
WebSocket client (websockets) carries its token in a query parameter or a
``Sec-WebSocket-Protocol`` entry, on every engine; the token never reaches the
application (its query, subprotocols, logs) and plain HTTP requests cannot use it."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
from support import app_config, wait_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from watt.config import load_config
from watt.errors import ConfigError
from watt.testing import RuntimeHandle

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(**claims) -> str:
    return jwt.encode({"sub": "ada", "exp": int(time.time()) + 300, **claims}, SECRET,
                      algorithm="HS256")


@pytest.fixture(scope="module", params=["watt", "hypercorn", "granian"])
def rt(request):
    if request.param == "granian":
        pytest.importorskip("granian.server.embed", reason="granian is not installed")
    config = {"server": {"engine": request.param},
              "telemetry": {"exporter": {"type": "memory"}},  # spans hold url.query
              "applications": [app_config("web", "edge_scope")],
              "auth": {"routes": [
                  {"prefix": "/live", "jwt": {"secret": SECRET},
                   "websocket": {"query": "access_token", "subprotocol": "bearer."}},
                  {"prefix": "/plain", "jwt": {"secret": SECRET}}]}}
    with RuntimeHandle(config) as handle:
        handle.ws = handle.url.replace("http://", "ws://")
        yield handle


def seen(url: str, **options) -> dict:
    """What the application saw of the upgrade (edge_scope answers it as JSON)."""
    with connect(url, open_timeout=30, **options) as ws:
        return json.loads(ws.recv(timeout=30))


def refused(url: str, **options) -> int:
    """The status a refused handshake got (403 where the engine cannot answer with HTTP)."""
    with pytest.raises(InvalidStatus) as caught:
        seen(url, **options)
    return caught.value.response.status_code


def test_a_token_in_the_query_is_taken_out_before_the_application(rt):
    secret = token(role="cook")
    view = seen(f"{rt.ws}/live/feed?room=1&access_token={secret}&x=a%20b")
    headers = dict(view["headers"])
    assert json.loads(headers["x-watt-user"])["role"] == "cook"
    assert view["query"] == "room=1&x=a%20b"
    # ... so neither Watt's access log nor its spans (url.query) hold it.
    wait_for(lambda: any(s["attributes"].get("url.query") == "room=1&x=a%20b"
                         for s in rt.spans()))
    assert any("/live/feed" in line["msg"] for line in rt.logs())
    assert secret not in json.dumps(rt.logs()) + json.dumps(rt.spans())


def test_a_token_in_a_subprotocol_is_taken_out_before_the_application(rt):
    view = seen(f"{rt.ws}/live/feed", subprotocols=["chat", "bearer." + token()])
    headers = dict(view["headers"])
    assert json.loads(headers["x-watt-user"])["sub"] == "ada"
    assert view["subprotocols"] == ["chat"] and headers["sec-websocket-protocol"] == "chat"


def test_a_bad_or_missing_token_refuses_the_upgrade(rt):
    assert refused(f"{rt.ws}/live/feed?access_token=nope") in (401, 403)
    assert refused(f"{rt.ws}/live/feed?access_token={token(exp=1)}") in (401, 403)
    assert refused(f"{rt.ws}/live/feed", subprotocols=["chat"]) in (401, 403)


def test_off_by_default_and_never_for_plain_http(rt):
    assert refused(f"{rt.ws}/plain/feed?access_token={token()}") in (401, 403)
    assert seen(f"{rt.ws}/plain/feed",
                additional_headers={"authorization": f"Bearer {token()}"})["scheme"] == "ws"
    reply = httpx.get(f"{rt.url}/live/feed?access_token={token()}", timeout=30,
                      headers={"sec-websocket-version": "13", "sec-websocket-protocol":
                               "bearer." + token()})
    assert reply.status_code == 401
    assert reply.json()["code"] == "WATT_AUTH_MISSING_TOKEN"


def test_a_websocket_setting_with_nowhere_to_look_is_a_config_error(tmp_path):
    config = {"applications": [app_config("web", "edge_scope")],
              "auth": {"routes": [{"prefix": "/live", "jwt": {"secret": SECRET},
                                   "websocket": {}}]}}
    with pytest.raises(ConfigError) as caught:
        RuntimeHandle(config)
    assert "auth.routes[0].websocket" in str(caught.value)
    assert caught.value.code == "WATT_CONFIG_INVALID"
    with pytest.raises(ConfigError):  # not a token a subprotocol may carry
        load_config({**config, "auth": {"routes": [{
            "prefix": "/live", "jwt": {"secret": SECRET},
            "websocket": {"subprotocol": "bearer "}}]}})
