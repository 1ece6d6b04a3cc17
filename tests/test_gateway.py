"""The gateway capability: examples/stack (gateway -> FastAPI in a process, Starlette,
Flask, a static folder) started on a real runtime, and the pure parts (config
validation, route matching, OpenAPI merge) on their own."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil

import httpx
import pytest
import websockets
from support import APPS, ROOT, wait_for

from capabilities.gateway_config import (
    CODE,
    HeaderRewrite,
    merge_openapi,
    parse_config,
    read_config,
)
from watt.capability import CapabilityError
from watt.errors import CODES, ApplicationStartError
from watt.testing import RuntimeHandle

STACK = ROOT / "examples" / "stack"


HALF_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})
    raise RuntimeError("failed mid-body")
"""


@pytest.fixture(scope="module")
def rt():
    with RuntimeHandle(str(STACK / "watt.json")) as handle:
        yield handle


def get(rt, path: str, **kw) -> httpx.Response:
    return httpx.get(rt.url + path, timeout=30, **kw)


def test_every_route_answers_through_the_entrypoint(rt):
    kinds = {a["id"]: (a["kind"], a["isolation"]) for a in rt.applications()}
    assert kinds["gateway"] == ("gateway", "subinterpreter")
    assert kinds["api"] == ("fastapi", "process")
    items = get(rt, "/api/items")
    assert items.status_code == 200 and items.json()[0]["name"] == "kettle"
    assert get(rt, "/api/items/9").status_code == 404
    assert get(rt, "/events/").json() == {"app": "events", "path": "/"}
    legacy = get(rt, "/legacy/hello", params={"name": "Ada"})
    assert legacy.json() == {"message": "hello Ada"}
    # Through the mesh too: another application (here the test's mesh client) calls
    # the gateway at http://gateway.plt.local.
    assert rt.mesh.get("http://gateway.plt.local/api/items/2").json()["name"] == "teapot"
    home = get(rt, "/")
    assert home.status_code == 200 and "Watt example stack" in home.text
    assert home.headers["content-type"] == "text/html; charset=utf-8"


def test_prefixes_are_stripped_or_kept_per_route(rt):
    seen = get(rt, "/api/whoami?x=1").json()
    assert seen["path"] == "/whoami"
    assert seen["headers"]["x-forwarded-prefix"] == "/api"
    assert get(rt, "/events").json()["path"] == "/"  # the bare prefix is the app's root
    assert get(rt, "/legacy/").json() == {"app": "legacy", "path": "/legacy/"}
    # Segment boundaries: /apix is not under /api, so the static site answers 404.
    assert get(rt, "/apix").status_code == 404


def test_request_and_response_headers_are_rewritten(rt):
    reply = get(rt, "/api/whoami", headers={"x-gateway": "client", "x-debug": "1",
                                             "x-kept": "yes"})
    headers = reply.json()["headers"]
    assert headers["x-gateway"] == "watt"  # set replaces the client's value
    assert "x-debug" not in headers  # removed
    assert headers["x-kept"] == "yes"
    assert headers["host"] == "api.plt.local"
    assert reply.headers["x-served-by"] == "api"
    assert "server" not in reply.headers
    events = get(rt, "/events/")
    assert events.headers["cache-control"] == "no-store"
    assert "x-served-by" not in events.headers  # rewrites are per route


def test_a_large_upload_and_download_stream_through(rt):
    size = 24 * 1024 * 1024
    digest = hashlib.sha256()

    def chunks():
        for _ in range(size // (256 * 1024)):
            piece = os.urandom(256 * 1024)
            digest.update(piece)
            yield piece

    reply = httpx.post(rt.url + "/events/upload", content=chunks(), timeout=60)
    assert reply.status_code == 200
    assert reply.json() == {"size": size, "sha256": digest.hexdigest()}

    pattern = bytes(range(256)) * 256  # the app's 64 KiB chunk
    expected, received = hashlib.sha256(), hashlib.sha256()
    for _ in range(size // len(pattern)):
        expected.update(pattern)
    count = 0
    with httpx.stream("GET", rt.url + f"/events/download?size={size}", timeout=60) as down:
        assert down.status_code == 200 and down.headers["x-size"] == str(size)
        assert "content-length" not in down.headers  # streamed, never buffered whole
        for piece in down.iter_raw():
            received.update(piece)
            count += len(piece)
    assert count == size and received.hexdigest() == expected.hexdigest()


def test_bodies_move_while_they_are_still_being_sent(rt):
    # Download: the first bytes arrive while the app still holds back the rest; a
    # gateway that buffered the response would give nothing before the release.
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", rt.url + "/events/held") as held:
            pieces = held.iter_raw()
            assert next(pieces) == b"first;"
            assert client.post(rt.url + "/events/release").json() == {"released": True}
            assert b"".join(pieces) == b"rest"
    # Upload: the app has read the first piece while the client has not sent the
    # second one yet.
    before = get(rt, "/events/progress").json()["received"]

    def chunks():
        yield b"a" * 100_000
        wait_for(lambda: get(rt, "/events/progress").json()["received"] > before, 20)
        yield b"b" * 100_000

    reply = httpx.post(rt.url + "/events/upload", content=chunks(), timeout=30)
    assert reply.json()["size"] == 200_000


def test_websockets_are_proxied(rt):
    async def talk() -> tuple[str, str]:
        url = rt.url.replace("http://", "ws://") + "/events/echo"
        async with websockets.connect(url) as ws:
            await ws.send("one")
            first = await ws.recv()
            await ws.send("two")
            second = await ws.recv()
            await ws.send("prefix")  # the handshake's headers reached the app
            assert await ws.recv() == "/events"
            await ws.send("bye")  # the app closes with 4001: the code comes through
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return first, second, closed.value.rcvd.code

    assert asyncio.run(talk()) == ("echo: one", "echo: two", 4001)


def test_merged_openapi_has_fastapis_paths_under_the_prefix(rt):
    document = get(rt, "/openapi.json").json()
    assert document["info"] == {"title": "Example stack", "version": "1.0.0"}
    assert document["openapi"].startswith("3.")
    assert {"/api/items", "/api/items/{item_id}", "/api/whoami"} <= set(document["paths"])
    assert not any(p.startswith("/items") for p in document["paths"])
    assert "Item" in document["components"]["schemas"]
    ref = document["paths"]["/api/items/{item_id}"]["get"]["responses"]["200"]
    assert ref["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Item"


def test_a_path_no_route_takes_is_a_404_with_a_code(tmp_path, watt_runtime):
    folder = tmp_path / "gw"
    folder.mkdir()
    (folder / "watt.gateway.json").write_text(json.dumps(
        {"routes": [{"prefix": "/only", "to": "nowhere"}], "openapi": False}))
    handle = watt_runtime({"entrypoint": "gw", "applications": [{"id": "gw",
                                                                  "path": str(folder)}]})
    [app] = handle.applications()
    assert app["kind"] == "gateway"  # detected by its file
    missing = httpx.get(handle.url + "/elsewhere", timeout=30)
    assert missing.status_code == 404 and missing.json()["code"] == "WATT_GATEWAY_NO_ROUTE"
    unknown = httpx.get(handle.url + "/only/x", timeout=30)
    assert unknown.status_code == 502 and unknown.json()["code"] == "WATT_MESH_UNKNOWN_APP"
    assert httpx.get(handle.url + "/openapi.json", timeout=30).status_code == 404


def test_a_bad_gateway_file_fails_the_start_with_file_and_key(tmp_path, watt_runtime):
    folder = tmp_path / "gw"
    shutil.copytree(STACK / "gateway", folder)
    config = json.loads((folder / "watt.gateway.json").read_text())
    config["routes"][0]["stripPrefix"] = "yes"
    (folder / "watt.gateway.json").write_text(json.dumps(config))
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [{"id": "gw", "path": str(folder), "kind": "gateway"}]})
    assert info.value.code == CODE
    message = str(info.value)
    assert str(folder / "watt.gateway.json") in message
    assert "`routes[0].stripPrefix` must be true or false" in message and "'gw'" in message


def test_a_gateway_in_a_process_worker(tmp_path, watt_runtime):
    folder = tmp_path / "gw"
    folder.mkdir()
    (folder / "watt.gateway.json").write_text(json.dumps({"routes": [
        {"prefix": "/b", "to": "basic", "responseHeaders": {"set": {"x-via": "gw"}}},
        {"prefix": "/half", "to": "half"}]}))
    half = tmp_path / "half"
    half.mkdir()
    (half / "main.py").write_text(HALF_APP)
    handle = watt_runtime({"entrypoint": "gw", "applications": [
        {"id": "gw", "path": str(folder), "isolation": "process"},
        {"id": "basic", "path": str(APPS / "basic"), "app": "main:app"},
        {"id": "half", "path": str(half), "app": "main:app"}]})
    apps = {a["id"]: a for a in handle.applications()}
    assert apps["gw"]["kind"] == "gateway" and apps["gw"]["isolation"] == "process"
    body = os.urandom(3 * 1024 * 1024)
    reply = httpx.post(handle.url + "/b/upload", content=body, timeout=30)
    assert reply.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert reply.headers["x-via"] == "gw"
    down = httpx.get(handle.url + "/b/download?size=3000000", timeout=30)
    assert down.headers["content-length"] == "3000000" and down.content == b"x" * 3_000_000
    # A client that goes away mid-response: the app behind the gateway sees it.
    with httpx.stream("GET", handle.url + "/b/wait-disconnect", timeout=30) as waiting:
        assert next(waiting.iter_raw()) == b"waiting\n"
    seen = httpx.get(handle.url + "/b/disconnect-seen", timeout=30).json()
    assert seen == {"seen": "disconnect"}
    # The app fails before answering: the mesh's 500 passes through. It fails after
    # its first bytes: the response is cut off, never completed as if all was well.
    boom = httpx.get(handle.url + "/b/boom", timeout=30)
    assert boom.status_code == 500 and boom.json()["code"] == "WATT_APP_UNHANDLED_ERROR"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(handle.url + "/half/", timeout=30)


# -- the pure parts ----------------------------------------------------------------------
@pytest.mark.parametrize(("data", "key"), [
    ([], "(top level)"),
    ({}, "routes"),
    ({"routes": []}, "routes"),
    ({"routes": [{"prefix": "/a", "to": "x"}], "route": 1}, "route"),
    ({"routes": ["/a"]}, "routes[0]"),
    ({"routes": [{"prefix": "api", "to": "x"}]}, "routes[0].prefix"),
    ({"routes": [{"prefix": "/a", "to": "X_Y"}]}, "routes[0].to"),
    ({"routes": [{"prefix": "/a"}]}, "routes[0].to"),
    ({"routes": [{"prefix": "/a", "to": "x", "strip": True}]}, "routes[0].strip"),
    ({"routes": [{"prefix": "/a", "to": "x"}, {"prefix": "/a/", "to": "y"}]}, "routes[1].prefix"),
    ({"routes": [{"prefix": "/a", "to": "x", "requestHeaders": {"set": {"bad name": "1"}}}]},
     "routes[0].requestHeaders.set.bad name"),
    ({"routes": [{"prefix": "/a", "to": "x", "responseHeaders": {"add": {"x": "a\r\nb"}}}]},
     "routes[0].responseHeaders.add.x"),
    ({"routes": [{"prefix": "/a", "to": "x", "responseHeaders": {"remove": "server"}}]},
     "routes[0].responseHeaders.remove"),
    ({"routes": [{"prefix": "/a", "to": "x", "responseHeaders": {"drop": []}}]},
     "routes[0].responseHeaders.drop"),
    ({"routes": [{"prefix": "/a", "to": "x"}], "openapi": {"path": "openapi.json"}},
     "openapi.path"),
    ({"routes": [{"prefix": "/a", "to": "x"}], "openapi": True}, "openapi"),
    ({"routes": [{"prefix": "/a", "to": "x", "openapi": "schema.json"}]}, "routes[0].openapi"),
    ({"routes": [{"prefix": "/a", "to": "x"}, {"prefix": "/", "to": "gw"}]}, "routes[1].to"),
])
def test_invalid_configs_name_the_key(data, key):
    with pytest.raises(CapabilityError) as info:
        parse_config(data, "/srv/gw/watt.gateway.json", "gw")
    assert info.value.code == CODE
    assert str(info.value).startswith(f"gateway: /srv/gw/watt.gateway.json: `{key}` ")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(CapabilityError, match="no watt.gateway.json in") as info:
        read_config(str(tmp_path))
    assert info.value.code == CODE
    (tmp_path / "watt.gateway.json").write_text("{routes: ")
    with pytest.raises(CapabilityError, match="not valid JSON") as info:
        read_config(str(tmp_path))
    assert info.value.code == CODE
    assert CODE in CODES and "WATT_GATEWAY_NO_ROUTE" in CODES


def test_longest_prefix_wins_on_segment_boundaries():
    config = parse_config({"routes": [{"prefix": "/", "to": "web"},
                                      {"prefix": "/api/", "to": "svc"},
                                      {"prefix": "/api/v2", "to": "v2", "stripPrefix": False}]})
    assert config.route("/api").to == "svc" and config.route("/api/x").to == "svc"
    assert config.route("/apix").to == "web"
    assert config.route("/api/v2/a").to == "v2" and config.route("/api/v20").to == "svc"
    svc, v2 = config.route("/api/x"), config.route("/api/v2")
    assert svc.target_path(b"/api/x/y") == b"/x/y" and svc.target_path(b"/api") == b"/"
    assert v2.target_path(b"/api/v2/a") == b"/api/v2/a"
    assert svc.public_path("/") == "/api" and svc.public_path("/a") == "/api/a"


def test_where_each_route_finds_its_openapi_document():
    config = parse_config({"routes": [
        {"prefix": "/a", "to": "a"}, {"prefix": "/b", "to": "b", "openapi": False},
        {"prefix": "/c", "to": "c", "openapi": "/schema/openapi.json"}]})
    assert [config.route(p).openapi for p in ("/a", "/b", "/c")] == [
        "/openapi.json", None, "/schema/openapi.json"]


def test_header_rewrite_order():
    rewrite = HeaderRewrite(remove=frozenset({b"cookie"}), set=((b"x-a", b"1"),),
                            add=((b"x-b", b"2"),))
    headers = [(b"cookie", b"c"), (b"X-A", b"0"), (b"x-b", b"1"), (b"accept", b"*/*")]
    assert rewrite.apply(headers) == [(b"x-b", b"1"), (b"accept", b"*/*"), (b"x-a", b"1"),
                                      (b"x-b", b"2")]


def test_openapi_merge_renames_colliding_components():
    config = parse_config({"routes": [{"prefix": "/a", "to": "one"},
                                      {"prefix": "/b", "to": "two"},
                                      {"prefix": "/c", "to": "three", "stripPrefix": False}]})
    one, two, three = (config.route(p) for p in ("/a", "/b", "/c"))

    def doc(schema: dict, op: str) -> dict:
        return {"openapi": "3.1.0", "paths": {"/thing": {"get": {
            "operationId": op, "responses": {"200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Thing"}}}}}}}},
                "components": {"schemas": {"Thing": schema, "Same": {"type": "string"}}},
                "tags": [{"name": "things"}]}

    merged = merge_openapi([(one, doc({"type": "object"}, "get_thing")),
                            (two, doc({"type": "integer"}, "get_thing")),
                            (three, {"paths": {"/c/x": {"get": {}}}})], "T", "2")
    assert merged["info"] == {"title": "T", "version": "2"}
    assert set(merged["paths"]) == {"/a/thing", "/b/thing", "/c/x"}
    schemas = merged["components"]["schemas"]
    assert schemas == {"Thing": {"type": "object"}, "Same": {"type": "string"},
                       "two_Thing": {"type": "integer"}}

    def ref(path: str) -> str:
        get_ = merged["paths"][path]["get"]
        return get_["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]

    assert ref("/a/thing") == "#/components/schemas/Thing"
    assert ref("/b/thing") == "#/components/schemas/two_Thing"
    assert merged["paths"]["/b/thing"]["get"]["operationId"] == "two_get_thing"
    assert merged["tags"] == [{"name": "things"}]


def test_routes_can_be_given_in_watt_json_instead_of_a_file(tmp_path, watt_runtime):
    from support import app_config

    folder = tmp_path / "gw"
    folder.mkdir()  # no watt.gateway.json: the routes come from the config
    rt = watt_runtime({"entrypoint": "gw", "applications": [
        {"id": "gw", "path": str(folder), "kind": "gateway", "gateway": {
            "routes": [{"prefix": "/b", "to": "back",
                        "responseHeaders": {"set": {"x-via": "gateway"}}}],
            "openapi": False}},
        app_config("back")]})
    reply = httpx.get(rt.url + "/b/whoami", timeout=30)
    assert reply.status_code == 200 and reply.json()["app"] == "back"
    assert reply.headers["x-via"] == "gateway"
    assert httpx.get(rt.url + "/elsewhere", timeout=30).status_code == 404


def test_gateway_keys_in_watt_json_are_checked_by_the_schema():
    from watt import load_config
    from watt.errors import WattError

    with pytest.raises(WattError) as info:
        load_config({"applications": [{"id": "gw", "path": ".", "kind": "gateway",
                                       "gateway": {"routes": [{"prefix": "api", "to": "x"}]}}]})
    assert info.value.code == "WATT_CONFIG_INVALID_TYPE"
    assert "applications[0].gateway.routes[0].prefix" in str(info.value)


@pytest.mark.parametrize(("path", "expect"), [
    ("/django/hello?name=Ada", "Ada"),          # Django (the django example's greeter)
    ("/quart/hello?name=Ada", "Ada"),           # Quart
    ("/litestar/items/kettle", '"count"'),      # Litestar, in a process
    ("/wsgi/hello?name=Ada", "Ada"),            # a bare WSGI callable
    ("/clock/time", '"epoch"'),                 # a command (its own program)
])
def test_every_capability_answers_behind_the_gateway(rt, path, expect):
    reply = get(rt, path)
    assert reply.status_code == 200, reply.text
    assert expect in reply.text
