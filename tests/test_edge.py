"""The edge pipeline's pure parts: stage order, replies, the slow path, header rules."""

from __future__ import annotations

import asyncio
import json

import pytest

from watt import edge
from watt.edge import EdgeReply, EdgeRequest, Pipeline, Stage, build_pipeline, problem
from watt.edge.proxy import Edge


class Tag(Stage):
    """Records its calls; answers when told to."""

    def __init__(self, name, log, answer=None, slow=False):
        self.name, self.log, self.answer, self.slow = name, log, answer, slow

    def check(self, req):
        self.log.append(("check", self.name))
        if self.slow:
            async def later():
                await asyncio.sleep(0)
                return self.answer
            return later()
        return self.answer

    def on_response(self, req, status, headers):
        self.log.append(("response", self.name))
        return headers + [(b"x-" + self.name.encode(), b"1")]


def req(path="/", headers=None):
    return EdgeRequest("GET", path, b"", headers or [], ("10.0.0.1", 1), "http", "app")


def test_stages_check_in_order_and_respond_in_reverse():
    log = []
    pipe = Pipeline([Tag("a", log), Tag("b", log)])
    assert pipe.check(req()) is None
    headers = pipe.on_response(req(), 200, [])
    assert log == [("check", "a"), ("check", "b"), ("response", "b"), ("response", "a")]
    assert headers == [(b"x-b", b"1"), (b"x-a", b"1")]


def test_a_reply_is_seen_by_the_stages_before_it_only():
    log = []
    reply = EdgeReply(429, [], b"")
    pipe = Pipeline([Tag("a", log), Tag("b", log, answer=reply), Tag("c", log)])
    out = pipe.check(req())
    assert out.status == 429 and out.headers == [(b"x-a", b"1")]
    assert ("check", "c") not in log


def test_an_awaitable_check_takes_the_slow_path_and_the_rest_still_run():
    log = []
    pipe = Pipeline([Tag("a", log, slow=True), Tag("b", log, answer=EdgeReply(401, [], b"no"))])
    pending = pipe.check(req())
    assert asyncio.iscoroutine(pending)
    out = asyncio.run(pending)
    assert out.status == 401 and out.headers == [(b"x-a", b"1")]


def test_body_stages_and_problem_json():
    class Body(Stage):
        def wants_body(self, req):
            return req.method == "POST"

        def check_body(self, req, body):
            return problem(400, "WATT_X", "Bad Request", "bad body") if body != b"ok" else None

    pipe = Pipeline([Body()])
    r = req()
    assert not pipe.wants_body(r)
    r.method = "POST"
    assert pipe.wants_body(r) and pipe.check_body(r, b"ok") is None
    out = pipe.check_body(r, b"nope")
    assert out.status == 400 and (b"content-type", b"application/problem+json") in out.headers
    doc = json.loads(out.body)
    assert doc["status"] == 400 and doc["code"] == "WATT_X" and doc["detail"] == "bad body"


def test_build_pipeline_orders_by_name_and_skips_what_config_turns_off(monkeypatch):
    monkeypatch.setattr(edge, "_FACTORIES", {})
    monkeypatch.setattr(edge, "BUILTIN", ())
    log = []
    edge.register_stage("extra", lambda c, i: Tag("extra", log))
    edge.register_stage("validation", lambda c, i: Tag("validation", log))
    edge.register_stage("cors", lambda c, i: None)
    edge.register_stage("rate-limit", lambda c, i: Tag("rate", log))
    pipe = build_pipeline(None, None)
    assert [s.name for s in pipe.stages] == ["rate", "validation", "extra"]
    monkeypatch.setattr(edge, "_FACTORIES", {"cors": lambda c, i: None})
    assert build_pipeline(None, None) is None


def scope(headers, client=("203.0.113.5", 4000), scheme="http"):
    return {"type": "http", "headers": headers, "client": client, "scheme": scheme}


def test_watt_only_and_user_headers_are_stripped_always():
    s = scope([(b"host", b"h"), (b"x-watt-user", b"admin"), (b"x-watt-anything", b"1"),
               (b"x-user", b"root"), (b"accept", b"*/*")])
    names = [n for n, _ in Edge(user_header="x-user").headers(s)]
    assert b"x-watt-user" not in names and b"x-watt-anything" not in names
    assert b"x-user" not in names and b"accept" in names
    s = scope([(b"remote-user", b"root")])
    assert b"remote-user" not in [n for n, _ in Edge(user_header="Remote-User").headers(s)]


def test_forwarded_headers_from_an_untrusted_peer_are_replaced():
    s = scope([(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4"),
               (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"evil"),
               (b"forwarded", b"for=1.2.3.4")])
    got = dict(Edge(trusted=["10.0.0.0/8"]).headers(s))
    assert got[b"x-forwarded-for"] == b"203.0.113.5"
    assert got[b"x-forwarded-proto"] == b"http" and got[b"x-forwarded-host"] == b"h"
    assert b"forwarded" not in got
    assert s["client"] == ("203.0.113.5", 4000) and s["scheme"] == "http"


def test_a_trusted_proxy_rewrites_client_and_scheme():
    s = scope([(b"host", b"h"), (b"x-forwarded-for", b"198.51.100.7, 10.0.0.9"),
               (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"public.example")],
              client=("10.1.2.3", 5555))
    got = dict(Edge(trusted=["10.0.0.0/8"]).headers(s))
    assert s["client"] == ("198.51.100.7", 0) and s["scheme"] == "https"
    assert got[b"x-forwarded-for"] == b"198.51.100.7, 10.0.0.9, 10.1.2.3"
    assert got[b"x-forwarded-proto"] == b"https"
    assert got[b"x-forwarded-host"] == b"public.example"


def test_a_request_id_is_added_unless_given():
    assert len(dict(Edge().headers(scope([])))[b"x-request-id"]) == 32
    assert dict(Edge().headers(scope([(b"x-request-id", b"abc")])))[b"x-request-id"] == b"abc"


@pytest.mark.parametrize("entry", ["bad", "10.0.0.0/33"])
def test_trusted_proxies_must_be_addresses(entry):
    from watt.config import load_config
    from watt.errors import ConfigError

    with pytest.raises(ConfigError, match="trustedProxies"):
        load_config({"server": {"trustedProxies": [entry]},
                     "applications": [{"id": "a", "path": ".", "app": "m:app"}]})


def loaded(**server):
    from watt.config import load_config

    return load_config({"server": server, "entrypoint": "a", "applications": [
        {"id": "a", "path": ".", "app": "m:app"},
        {"id": "b", "path": ".", "app": "m:app", "cors": False}]})


def test_token_buckets_refill_per_client_and_prefix_within_bounded_memory():
    from watt.edge.ratelimit import factory

    stage = factory(loaded(rateLimit={"max": 2, "timeWindow": 1000, "maxClients": 3,
                                      "routes": [{"prefix": "/api", "max": 1}]}), None)
    now = [100.0]
    stage.clock = lambda: now[0]

    def hit(path, ip="10.0.0.1"):
        r = EdgeRequest("GET", path, b"", [], (ip, 1), "http", "a")
        reply = stage.check(r)
        return reply.status if reply else 200

    assert [hit("/x"), hit("/x"), hit("/x")] == [200, 200, 429]
    assert hit("/api/v1") == 200 and hit("/api") == 429 and hit("/apix") == 429
    assert hit("/x", ip="10.0.0.2") == 200  # another client, its own bucket
    now[0] += 0.5  # one token back (2 per second)
    assert hit("/x") == 200 and hit("/x") == 429
    reply = stage.check(EdgeRequest("GET", "/api", b"", [], ("10.0.0.1", 1), "http", "a"))
    assert dict(reply.headers)[b"retry-after"] == b"60"  # 1 token per 60 s on /api
    for n in range(10):
        hit("/x", ip=f"10.1.0.{n}")
    assert len(stage.buckets) == 3


def test_no_stage_without_config():
    from watt.edge.cors import factory as cors
    from watt.edge.ratelimit import factory as rate
    from watt.edge.security import factory as security

    config = loaded()
    assert cors(config, None) is None and rate(config, None) is None
    assert security(config, None) is None


def test_cors_policy_per_application_and_preflight_rules():
    from watt.edge.cors import factory

    stage = factory(loaded(cors={"origin": "*", "methods": ["GET"]}), None)
    pre = [(b"origin", b"https://x.example"), (b"access-control-request-method", b"GET")]
    ok = stage.check(EdgeRequest("OPTIONS", "/", b"", pre, None, "http", "a"))
    assert ok.status == 204 and (b"access-control-allow-origin", b"*") in ok.headers
    bad = stage.check(EdgeRequest("OPTIONS", "/", b"", pre[:1] + [
        (b"access-control-request-method", b"DELETE")], None, "http", "a"))
    assert bad.status == 403
    assert stage.check(EdgeRequest("OPTIONS", "/", b"", pre, None, "http", "b")) is None
    r = EdgeRequest("GET", "/", b"", pre[:1], None, "http", "a")
    assert stage.check(r) is None
    assert (b"access-control-allow-origin", b"*") in stage.on_response(r, 200, [])


def test_security_headers_keep_the_apps_own_and_hsts_needs_https():
    from watt.edge.security import factory

    stage = factory(loaded(securityHeaders={"frameOptions": None, "referrerPolicy": "same-origin"}),
                    None)
    plain = dict(stage.on_response(req(), 200, [(b"x-content-type-options", b"app")]))
    assert plain[b"x-content-type-options"] == b"app" and b"x-frame-options" not in plain
    assert plain[b"referrer-policy"] == b"same-origin"
    assert b"strict-transport-security" not in plain
    secure = req()
    secure.scheme = "https"
    assert b"strict-transport-security" in dict(stage.on_response(secure, 200, []))


def test_through_a_gateway_the_request_goes_to_the_routed_app():
    from capabilities.gateway_config import parse_config
    from watt.edge.info import EdgeInfo

    routes = parse_config({"routes": [{"prefix": "/api", "to": "svc"},
                                      {"prefix": "/", "to": "web"}]}, self_id="gw")
    info = EdgeInfo("gw", {}, routes=routes)
    assert [info.app_for(p) for p in ("/api/x", "/api", "/apix", "/")] == \
        ["svc", "svc", "web", "web"]
    assert EdgeInfo("solo", {}).app_for("/api") == "solo"
