"""Request validation at the edge: real OpenAPI documents published by a FastAPI and a
Litestar application (fetched through their channels once they are ready) and a file
named in config, behind a gateway entrypoint, on a real runtime; the compiled
document's matching and coercion on their own."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from support import APPS, app_config, wait_for

from watt.edge.info import EdgeInfo
from watt.edge.openapi_spec import SpecError, compile_spec
from watt.edge.validation import compile_file, factory
from watt.errors import ConfigError
from watt.testing import RuntimeHandle

ORDERS = str(APPS / "edge_echo" / "openapi.json")


@pytest.fixture(scope="module")
def rt():
    gateway = {"id": "gateway", "path": str(APPS / "edge_echo"), "kind": "gateway",
               "gateway": {"routes": [
                   {"prefix": "/fast", "to": "fast"}, {"prefix": "/lite", "to": "lite"},
                   {"prefix": "/echo", "to": "echo"}, {"prefix": "/off", "to": "off"},
                   {"prefix": "/plain", "to": "plain"}]}}
    config = {"entrypoint": "gateway", "applications": [
        gateway,
        app_config("fast", "edge_fastapi"),
        app_config("lite", "edge_litestar"),
        app_config("echo", "edge_echo", openapi="openapi.json"),
        app_config("off", "edge_echo", openapi="openapi.json", validation=False),
        app_config("plain", "edge_echo"),  # an ASGI app: publishes no document by default
    ]}
    with RuntimeHandle(config) as handle:
        handle.client = httpx.Client(base_url=handle.url, timeout=30)
        yield handle
        handle.client.close()


def violations(reply: httpx.Response) -> list:
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["code"] == "WATT_REQUEST_INVALID" and body["status"] == 400
    assert body["type"] == "urn:watt:error:WATT_REQUEST_INVALID"
    return sorted(body["errors"], key=lambda e: (e["in"], e.get("name", e.get("pointer"))))


@pytest.mark.parametrize("prefix", ["/fast", "/lite"])
def test_valid_requests_reach_the_application(rt, prefix):
    reply = rt.client.get(f"{prefix}/items/7?limit=5", headers={"x-tenant": "acme"})
    assert reply.status_code == 200
    assert reply.json()["item_id"] == 7 and reply.json()["tenant"] == "acme"
    reply = rt.client.post(f"{prefix}/items", json={"name": "kettle", "price": 12.5})
    assert reply.status_code in (200, 201) and reply.json()["created"]["name"] == "kettle"


@pytest.mark.parametrize("prefix", ["/fast", "/lite"])
def test_path_query_and_header_violations_are_listed(rt, prefix):
    found = violations(rt.client.get(f"{prefix}/items/seven?limit=0"))
    assert [(v["in"], v["name"]) for v in found] == [
        ("header", "x-tenant"), ("path", "item_id"), ("query", "limit")]
    assert found[0]["detail"] == "required header parameter is missing"
    assert "integer" in found[1]["detail"] and "minimum" in found[2]["detail"]


@pytest.mark.parametrize("prefix", ["/fast", "/lite"])
def test_json_body_violations_point_into_the_body(rt, prefix):
    found = violations(rt.client.post(f"{prefix}/items",
                                      json={"price": "free", "tags": ["a", 3]}))
    pointers = {v["pointer"]: v["detail"] for v in found}
    assert set(pointers) == {"", "/price", "/tags/1"}
    assert "name" in pointers[""] and "required" in pointers[""]
    found = violations(rt.client.post(f"{prefix}/items", content=b"{not json",
                                      headers={"content-type": "application/json"}))
    assert found[0]["in"] == "body" and "not valid JSON" in found[0]["detail"]
    found = violations(rt.client.post(f"{prefix}/items"))
    assert found == [{"in": "body", "pointer": "", "detail": "a JSON body is required"}]


def test_fastapi_query_coercion_matches_the_framework(rt):
    reply = rt.client.get("/fast/items/1?verbose=yes&tag=a&tag=b",
                          headers={"x-tenant": "t"})
    assert reply.status_code == 200
    assert reply.json()["verbose"] is True and reply.json()["tag"] == ["a", "b"]
    found = violations(rt.client.get("/fast/items/1?verbose=perhaps",
                                     headers={"x-tenant": "t"}))
    assert [(v["in"], v["name"]) for v in found] == [("query", "verbose")]


def test_undescribed_paths_and_methods_pass_to_the_application(rt):
    assert rt.client.get("/fast/nowhere").status_code == 404  # FastAPI's own answer
    assert rt.client.delete("/fast/items/1").status_code == 405
    assert rt.client.get("/fast/openapi.json").status_code == 200


def test_a_document_file_named_in_config(rt):
    reply = rt.client.get("/echo/orders/3?ids=1,2&status=open")
    assert reply.status_code == 200 and reply.json()["path"] == "/orders/3"
    found = violations(rt.client.get("/echo/orders/0?ids=1,x&status=lost"))
    assert [(v["in"], v["name"]) for v in found] == [
        ("path", "order_id"), ("query", "ids"), ("query", "status")]
    reply = rt.client.post("/echo/orders", json={"qty": 2, "note": None})  # 3.0 nullable
    assert reply.status_code == 200 and json.loads(reply.json()["body"]) == {"qty": 2,
                                                                             "note": None}
    found = violations(rt.client.post("/echo/orders", json={"qty": 0}))
    assert {v["pointer"] for v in found} == {"", "/qty"}


def test_validation_false_lets_everything_through(rt):
    reply = rt.client.get("/off/orders/0?ids=x")
    assert reply.status_code == 200 and reply.json()["path"] == "/orders/0"
    assert rt.client.post("/off/orders", content=b"{").status_code == 200


def test_which_applications_get_checked(rt):
    """FastAPI and Litestar by themselves, a file when named; not a kind that publishes
    none by default, nor one with validation false (no fetch, no stage for them)."""
    config = rt.runtime.config
    stage = factory(config, EdgeInfo("gateway", {a.id: a for a in config.applications},
                                     runtime=rt.runtime))
    assert stage.fetch == {"fast": ("/openapi.json",), "lite": ("/schema/openapi.json",)}
    assert set(stage.specs) == {"echo"}
    assert rt.client.get("/plain/orders/0?ids=x").status_code == 200
    only_plain = {a.id: a for a in config.applications if a.id == "plain"}
    assert factory(config, EdgeInfo("plain", only_plain, runtime=rt.runtime)) is None


def test_a_bad_document_file_fails_the_start(tmp_path):
    with pytest.raises(ConfigError) as info:
        compile_file(str(tmp_path / "missing.json"), "web")
    assert info.value.code == "WATT_OPENAPI_INVALID"
    (tmp_path / "swagger.json").write_text(json.dumps({"swagger": "2.0", "paths": {}}))
    # A file is named relative to the application's folder (a leading / is a served path).
    relative = os.path.relpath(tmp_path / "swagger.json", APPS / "edge_echo")
    with pytest.raises(ConfigError) as info:
        RuntimeHandle({"applications": [app_config("web", "edge_echo", openapi=relative)]})
    assert info.value.code == "WATT_OPENAPI_INVALID" and "OpenAPI 3" in info.value.message
    assert info.value.key == "applications[0].openapi" and info.value.app_id == "web"


# -- the compiled document on its own ----------------------------------------------------


def _doc(paths: dict, **extra) -> dict:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": paths,
            **extra}


def _get(*parameters) -> dict:
    return {"get": {"parameters": list(parameters), "responses": {}}}


def test_literal_paths_win_over_templates_and_servers_prefix_paths():
    spec = compile_spec(_doc({
        "/users/{id}": _get({"name": "id", "in": "path", "schema": {"type": "integer"}}),
        "/users/me": _get(),
        "/users/{id}/posts/{post}": _get(),
    }, servers=[{"url": "https://api.test/v1"}]))
    op, params = spec.find("GET", "/v1/users/me")
    assert op.template == "/users/me" and params == {}
    op, params = spec.find("GET", "/v1/users/42")
    assert op.template == "/users/{id}" and params == {"id": "42"}
    assert spec.find("GET", "/v1/users/4/posts/a%20b")[1] == {"id": "4", "post": "a b"}
    assert spec.find("POST", "/v1/users/me") is None and spec.find("GET", "/users/me") is None
    assert spec.find("HEAD", "/v1/users/me") is not None


def test_parameter_coercion():
    spec = compile_spec(_doc({"/p": _get(
        {"name": "n", "in": "query", "schema": {"anyOf": [{"type": "integer"},
                                                          {"type": "null"}]}},
        {"name": "f", "in": "query", "schema": {"type": "number", "maximum": 1}},
        {"name": "b", "in": "query", "schema": {"type": "boolean"}},
        {"name": "X-Mode", "in": "header", "required": True,
         "schema": {"enum": ["a", "b"]}},
        {"name": "Authorization", "in": "header", "required": True,
         "schema": {"type": "string"}},
    )}))
    op, _ = spec.find("GET", "/p")
    assert op.check({}, b"n=3&f=0.5&b=on", [(b"x-mode", b"a")]) == []
    found = op.check({}, b"n=x&f=2&b=maybe", [(b"x-mode", b"c")])
    assert [(v["in"], v["name"]) for v in found] == [
        ("query", "n"), ("query", "f"), ("query", "b"), ("header", "x-mode")]


def test_body_only_read_for_json_operations():
    spec = compile_spec(_doc({"/upload": {"post": {"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object"}},
        "application/json": {"schema": {"type": "object"}}}}, "responses": {}}},
        "/plain": {"post": {"responses": {}}}}))
    upload, _ = spec.find("POST", "/upload")
    assert upload.wants_body(b"application/json; charset=utf-8")
    assert upload.wants_body(b"application/vnd.api+json")
    assert not upload.wants_body(b"multipart/form-data; boundary=x")
    assert not upload.wants_body(None)  # not required, not JSON only
    assert not spec.find("POST", "/plain")[0].wants_body(b"application/json")
    assert upload.check_body(b"application/json", b"") == []
    assert upload.check_body(b"application/json", b"[1]")[0]["pointer"] == ""


@pytest.mark.parametrize(("doc", "message"), [
    ({"swagger": "2.0"}, "not an OpenAPI 3 document"),
    (_doc({"/x": _get({"name": "a", "in": "query",
                       "schema": {"$ref": "#/components/schemas/Nope"}})}), "names nothing"),
    (_doc({"/x": _get({"name": "a", "in": "query",
                       "schema": {"$ref": "https://elsewhere.test/s.json"}})}), "local $ref"),
    ([], "not a JSON object"),
])
def test_unusable_documents_are_spec_errors(doc, message):
    with pytest.raises(SpecError, match=message.replace("$", r"\$")):
        compile_spec(doc)


def test_a_json_content_parameter_is_parsed():
    spec = compile_spec(_doc({"/f": _get({"name": "filter", "in": "query", "content": {
        "application/json": {"schema": {"type": "object", "required": ["x"]}}}})}))
    op, _ = spec.find("GET", "/f")
    assert op.check({}, b"filter=%7B%22x%22%3A1%7D", []) == []
    assert [v["name"] for v in op.check({}, b"filter=%7B%7D", [])] == ["filter"]


def test_object_parameters_spread_over_keys_are_left_to_the_application():
    spec = compile_spec(_doc({"/o": _get({"name": "filter", "in": "query", "required": True,
                                          "style": "deepObject",
                                          "schema": {"type": "object"}})}))
    assert spec.find("GET", "/o")[0].check({}, b"filter[name]=x", []) == []


def test_the_document_is_fetched_again_when_the_application_restarts(tmp_path):
    """A restart (as `watt restart` and `watt dev` do it, or after a crash) brings a new
    document: the edge checks against it; when the restarted app publishes none, the
    old one stays."""
    version = tmp_path / "version"
    version.write_text("int")
    config = {"restartOnError": 50, "applications": [app_config(
        "versions", "edge_fastapi_versions", env={"DOC_VERSION_FILE": str(version)})]}
    with RuntimeHandle(config) as rt, httpx.Client(base_url=rt.url, timeout=30) as client:
        assert violations(client.get("/items/seven"))[0]["name"] == "item_id"
        version.write_text("str")
        rt._call(rt.runtime.restart("versions"))
        wait_for(lambda: client.get("/items/seven").status_code == 200)
        assert client.get("/items/seven").json() == {"item_id": "seven", "version": "str"}

        version.write_text("none")  # the re-fetch fails: the "str" document stays
        rt._call(rt.runtime.restart("versions"))
        wait_for(lambda: any("could not be loaded again" in r["msg"]
                             for r in rt.logs(app="versions")))
        assert client.get("/items/seven").json()["version"] == "none"
        version.write_text("int")
        rt._call(rt.runtime.restart("versions"))
        wait_for(lambda: client.get("/items/seven").status_code == 400)

        version.write_text("str")  # a crash restart picks it up too
        assert client.get("/crash").status_code == 502
        wait_for(lambda: client.get("/items/seven").status_code == 200)


def _items_document(kind: str) -> str:
    return json.dumps({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
        "/items/{item_id}": {"get": {"parameters": [{
            "name": "item_id", "in": "path", "required": True, "schema": {"type": kind}}],
            "responses": {"200": {"description": "ok"}}}}}})


def test_a_document_file_is_read_again_when_the_application_restarts(tmp_path):
    document = tmp_path / "openapi.json"
    document.write_text(_items_document("integer"))
    relative = os.path.relpath(document, APPS / "edge_echo")  # "/..." would be a URL path
    config = {"applications": [app_config("echo", "edge_echo", openapi=relative)]}
    with RuntimeHandle(config) as rt, httpx.Client(base_url=rt.url, timeout=30) as client:
        assert violations(client.get("/items/seven"))[0]["name"] == "item_id"
        document.write_text(_items_document("string"))
        rt._call(rt.runtime.restart("echo"))
        wait_for(lambda: client.get("/items/seven").status_code == 200)
        document.write_text("{not json")  # unreadable now: the "string" document stays
        rt._call(rt.runtime.restart("echo"))
        wait_for(lambda: any("could not be loaded again" in r["msg"] and "not valid JSON"
                             in r["msg"] for r in rt.logs(app="echo")))
        assert client.get("/items/seven").status_code == 200
