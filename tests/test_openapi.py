"""The management API against the OpenAPI document it serves, with schemathesis.

A real runtime (``watt start``, two applications) serves the API on its unix
socket; the document is fetched from it (``GET /api/v1/openapi.json``) and
schemathesis generates requests for every operation — valid ones, and
invalid ones that must be rejected with a 4xx — sends them over the socket
and checks each answer against the document: status documented, media type,
headers and body schema, never a 5xx.  ``POST /stop`` is left out (it would
end the runtime under test; tests/test_management.py covers it).

Bounded: a fixed number of examples per operation and mode, derandomized, so
the run takes a few seconds and is the same on every machine.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from schemathesis.generation import GenerationMode
from support import app_config, watt_start

from watt.management import ROUTES

EXAMPLES = 12  # per operation and generation mode
SKIPPED = {("POST", "/api/v1/stop")}
FOLLOW = ("1", "true", "yes")  # GET /logs?follow=...: a stream kept open


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    config = tmp_path_factory.mktemp("openapi") / "watt.json"
    config.write_text(json.dumps({"server": {"port": 0}, "entrypoint": "web", "applications": [
        app_config("web"), app_config("api", env={"API_TOKEN": "x"})],
        "httpCache": {}}))  # POST /cache/invalidate answers 200
    with watt_start(config, "wo-") as (proc, xdg):
        proc.wait_url()
        transport = httpx.HTTPTransport(uds=str(xdg / "watt" / f"{proc.proc.pid}.sock"))
        with httpx.Client(transport=transport, base_url="http://watt", timeout=60) as client:
            yield client


@pytest.fixture(scope="module")
def document(api) -> dict:
    reply = api.get("/api/v1/openapi.json")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    return reply.json()


def test_the_document_lists_every_route_and_this_runtimes_ids(document):
    assert document["openapi"] == "3.1.0"
    listed = {(method.upper(), path) for path, item in document["paths"].items()
              for method in item}
    assert listed == {(r.method, "/api/v1" + r.path) for r in ROUTES}
    health = document["paths"]["/api/v1/applications/{id}/health"]["get"]
    [param] = health["parameters"]
    assert param["schema"]["examples"] == ["api", "web"]
    assert {"200", "404", "405", "500"} <= set(health["responses"])
    # The dashboard's endpoints (docs/dashboard.md), each with its answers documented.
    paths = document["paths"]
    for method, path in (("get", "stats"), ("get", "traces"), ("get", "dashboard"),
                         ("post", "dashboard"), ("delete", "dashboard"),
                         ("put", "applications/{id}/log-level")):
        assert "200" in paths[f"/api/v1/{path}"][method]["responses"], (method, path)
    start = paths["/api/v1/dashboard"]["post"]
    assert start["requestBody"]["required"] and "409" in start["responses"]


def _send(api: httpx.Client, case) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url="http://watt")
    content = kwargs.get("data")
    if isinstance(content, str):
        content = content.encode()
    request = api.build_request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                headers=kwargs.get("headers"), content=content,
                                **({"json": kwargs["json"]} if "json" in kwargs else {}))
    return api.send(request)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_every_answer_matches_the_document(api, document, mode):
    schema = schemathesis.openapi.from_dict(document)
    checked, statuses = [], {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        declared = document["paths"][operation.path][operation.method.lower()]
        if mode is GenerationMode.NEGATIVE and not ("parameters" in declared
                                                    or "requestBody" in declared):
            continue  # nothing a client sends can be invalid (GET /metadata)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            # A followed log stream never ends by itself (tests/test_observe_cli.py
            # follows one): only its finite form is sent here.
            assume(str((case.query or {}).get("follow", "")).lower() not in FOLLOW)
            response = _send(api, case)
            statuses.setdefault(case.operation.path, set()).add(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path,
                                                response.text)
            case.validate_response(response)

        check()
        checked.append(operation.path)
    assert len(checked) >= (len(ROUTES) - len(SKIPPED)) // 2
    assert ("/api/v1/applications/{id}/inject" in checked
            and "/api/v1/applications/{id}/restart" in checked)
    if mode is GenerationMode.POSITIVE:  # the examples reach real applications too
        assert all(200 in statuses[path] for path in checked), statuses
        assert 404 in statuses["/api/v1/applications/{id}"]
    else:
        wrong = [(path, found) for path, found in statuses.items()
                 if max(found) >= 500 or min(found) < 400]
        assert not wrong, wrong
