"""Every example under examples/ (but `stack`, which tests/test_gateway.py covers), started
under Watt as its watt.json says: its entrypoint answers on a route its app defines, and one
application answers through the mesh. Those whose capabilities run in subinterpreters by
default answer the same with every application forced to `isolation: "process"`."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from support import ROOT

from watt.testing import RuntimeHandle

EXAMPLES = ROOT / "examples"
FOUND = sorted(p.parent.name for p in EXAMPLES.glob("*/watt.json") if p.parent.name != "stack")


def greeting(key: str = "greeting"):
    return lambda r: r.json()[key] == "Hello, Ada!"


def greeted(key: str = "greeting"):
    return lambda r: r.json()["via"] == "mesh" and r.json()["greeter"][key] == "Hello, Ada!"


# example -> ((entrypoint path, check), (mesh app id, path, check)); a new example needs a line
CHECKS = {
    "command": (("/now", lambda r: r.json()["status"] == 200 and r.json()["clock"]["epoch"] > 0),
                ("clock", "/time", lambda r: r.json()["epoch"] > 0)),
    "django": (("/greet?name=Ada", greeted()),
               ("greeter", "/hello?name=Ada", greeting())),
    "fastapi": (("/quote/1?quantity=3", lambda r: r.json()["total_cents"] == 7500),
                ("catalog", "/items", lambda r: len(r.json()["items"]) == 2)),
    "flask": (("/greet?name=Ada", greeted()),
              ("greeter", "/hello?name=Ada", greeting())),
    "hello": (("/greet?name=Ada", greeted("message")),
              ("greeter", "/hello?name=Ada", greeting("message"))),
    "litestar": (("/stock/teapot", lambda r: r.json()["inventory"]["count"] == 12),
                 ("inventory", "/items/kettle", lambda r: r.json()["count"] == 3)),
    "quart": (("/greet?name=Ada", greeted()),
              ("greeter", "/hello?name=Ada", greeting())),
    "static": (("/", lambda r: "Served by Watt" in r.text),
               ("site", "/about/", lambda r: "<h1>About</h1>" in r.text)),
    "wsgi": (("/greet?name=Ada", greeted()),
             ("greeter", "/hello?name=Ada", greeting())),
}
# Their capabilities (asgi, starlette, quart, wsgi, flask, django, static) default to
# subinterpreters; fastapi and litestar already run in processes, command is test_command's.
PROCESS = ["django", "flask", "hello", "quart", "static", "wsgi"]


def process_config(name: str) -> dict:
    """The example's watt.json as a dict, every application under `isolation: "process"`."""
    config = json.loads((EXAMPLES / name / "watt.json").read_text())
    config.pop("$schema", None)
    config.pop("server", None)  # the runtime binds port 0
    for app in config["applications"]:
        app["path"] = str(EXAMPLES / name / app["path"])
        app["isolation"] = "process"
    return config


@pytest.fixture(scope="module", params=[(n, "default") for n in FOUND]
                + [(n, "process") for n in PROCESS], ids="-".join)
def example(request):
    name, isolation = request.param
    config = EXAMPLES / name / "watt.json" if isolation == "default" else process_config(name)
    with RuntimeHandle(config) as rt:
        rt.example, rt.isolation = name, isolation
        yield rt


def test_every_example_has_checks():
    assert set(FOUND) == set(CHECKS)
    assert {"litestar", "quart", "wsgi", "hello"} <= set(FOUND)


def test_the_entrypoint_answers(example):
    path, check = CHECKS[example.example][0]
    reply = httpx.get(example.url + path, timeout=30)
    assert reply.status_code == 200, reply.text
    assert check(reply), reply.text


def test_an_application_answers_through_the_mesh(example):
    app_id, path, check = CHECKS[example.example][1]
    reply = example.mesh.get(f"http://{app_id}.plt.local{path}")
    assert reply.status_code == 200, reply.text
    assert check(reply), reply.text


def test_the_isolation_is_the_one_asked_for(example):
    apps = example.applications()
    if example.isolation == "process":
        assert {a["isolation"] for a in apps} == {"process"}
        assert all(w["pid"] != os.getpid() for a in apps for w in a["workers"])
    else:
        expected = {"fastapi": "process", "litestar": "process"}
        kinds = {a["id"]: a["kind"] for a in apps}
        for app in apps:
            assert app["isolation"] == expected.get(kinds[app["id"]], "subinterpreter"), app
