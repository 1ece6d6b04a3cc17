"""The HTTP cache: RFC 9111 rules (a table), the LRU store, and a real runtime whose
mesh calls and entrypoint responses it answers (hits across workers, revalidation,
invalidation from an application, the management API and the CLI, metrics)."""

from __future__ import annotations

import email.utils
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from support import app_config

from watt import cli
from watt.cache import policy
from watt.cache.store import MemoryStore
from watt.config_cache import HttpCacheConfig
from watt.errors import WattError
from watt.testing import RuntimeHandle

URL = "http://b.plt.local/item"
DEFAULTS = HttpCacheConfig()


def _date(seconds_ago: float) -> str:
    return email.utils.formatdate(time.time() - seconds_ago, usegmt=True)


def _entry(response: list[tuple[str, str]], request: dict | None = None, status: int = 200,
           default_ttl: int = 0, url: str = URL) -> policy.Entry:
    return policy.Entry(key=policy.cache_key("GET", url), app="b", method="GET", url=url,
                        status=status, headers=response, body=b"{}",
                        request_headers=request or {}, tags=(), default_ttl=default_ttl)


# (case, request headers, response status, response headers, config changes,
#  stored?, seconds later, next request headers, expected: hit | revalidate | miss)
CASES = [
    ("max-age fresh", {}, 200, [("cache-control", "max-age=60")], {}, True, 0, {}, "hit"),
    ("max-age expired", {}, 200, [("cache-control", "max-age=60")], {}, True, 120, {}, "miss"),
    ("expired, etag: revalidate", {}, 200, [("cache-control", "max-age=60"), ("etag", '"1"')],
     {}, True, 120, {}, "revalidate"),
    ("expired, last-modified: revalidate", {}, 200,
     [("cache-control", "max-age=1"), ("last-modified", _date(3600))], {}, True, 60, {},
     "revalidate"),
    ("s-maxage wins over max-age (shared cache)", {}, 200,
     [("cache-control", "max-age=0, s-maxage=60")], {}, True, 10, {}, "hit"),
    ("Expires in the future", {}, 200, [("expires", _date(-60))], {}, True, 0, {}, "hit"),
    ("Expires in the past", {}, 200, [("expires", _date(60)), ("etag", '"e"')], {}, True, 0,
     {}, "revalidate"),
    ("no-store", {}, 200, [("cache-control", "no-store, max-age=60")], {}, False, 0, {}, None),
    ("private", {}, 200, [("cache-control", "private, max-age=60")], {}, False, 0, {}, None),
    ("no-cache: always revalidated", {}, 200, [("cache-control", "no-cache"), ("etag", '"n"')],
     {}, True, 0, {}, "revalidate"),
    ("must-revalidate while fresh", {}, 200,
     [("cache-control", "max-age=60, must-revalidate")], {}, True, 0, {}, "hit"),
    ("must-revalidate when stale", {}, 200,
     [("cache-control", "max-age=60, must-revalidate"), ("etag", '"m"')], {}, True, 120, {},
     "revalidate"),
    ("nothing to go by", {}, 200, [("content-type", "text/plain")], {}, False, 0, {}, None),
    ("defaultTTL gives freshness", {}, 200, [], {"default_ttl": 30}, True, 10, {}, "hit"),
    ("defaultTTL runs out", {}, 200, [], {"default_ttl": 30}, True, 60, {}, "miss"),
    ("defaultTTL does not override no-cache", {}, 200,
     [("cache-control", "no-cache"), ("etag", '"d"')], {"default_ttl": 30}, True, 0, {},
     "revalidate"),
    ("Set-Cookie never stored by default", {}, 200,
     [("cache-control", "public, max-age=60"), ("set-cookie", "a=1")], {}, False, 0, {}, None),
    ("Set-Cookie stored when allowed", {}, 200,
     [("cache-control", "public, max-age=60"), ("set-cookie", "a=1")],
     {"allow_set_cookie": True}, True, 0, {}, "hit"),
    ("Authorization never stored by default", {"authorization": ["Bearer x"]}, 200,
     [("cache-control", "public, max-age=60")], {}, False, 0, {}, None),
    ("Authorization + public when allowed", {"authorization": ["Bearer x"]}, 200,
     [("cache-control", "public, max-age=60")], {"allow_authorization": True}, True, 0,
     {"authorization": ["Bearer x"]}, "hit"),
    ("Authorization without public, even when allowed", {"authorization": ["Bearer x"]}, 200,
     [("cache-control", "max-age=60")], {"allow_authorization": True}, False, 0, {}, None),
    ("request no-store", {"cache-control": ["no-store"]}, 200,
     [("cache-control", "max-age=60")], {}, False, 0, {}, None),
    ("request no-cache revalidates a fresh entry", {}, 200,
     [("cache-control", "max-age=60"), ("etag", '"r"')], {}, True, 0,
     {"cache-control": ["no-cache"]}, "revalidate"),
    ("Vary: same header value hits", {"accept": ["text/html"]}, 200,
     [("cache-control", "max-age=60"), ("vary", "accept")], {}, True, 0,
     {"accept": ["text/html"]}, "hit"),
    ("Vary: another value misses", {"accept": ["text/html"]}, 200,
     [("cache-control", "max-age=60"), ("vary", "accept")], {}, True, 0,
     {"accept": ["application/json"]}, "miss"),
    ("Vary: * never stored", {}, 200, [("cache-control", "max-age=60"), ("vary", "*")], {},
     False, 0, {}, None),
    ("404 with max-age is cacheable", {}, 404, [("cache-control", "max-age=60")], {}, True, 0,
     {}, "hit"),
    ("206 is not stored", {}, 206, [("cache-control", "max-age=60")], {}, False, 0, {}, None),
    ("500 without freshness", {}, 500, [("etag", '"x"')], {}, False, 0, {}, None),
]


@pytest.mark.parametrize(("request_headers", "status", "response", "changes", "stored", "later",
                          "again", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rules(request_headers, status, response, changes, stored, later, again, expected):
    config = HttpCacheConfig(**changes)
    headers = policy.with_date(response, time.time() - later)
    ok, default_ttl = policy.storable("GET", URL, request_headers, status, headers, config)
    assert ok is stored
    if not stored:
        return
    entry = _entry(headers, request_headers, status, default_ttl)
    decision = policy.lookup("GET", URL, again, [entry])
    kind = {policy.Hit: "hit", policy.Revalidate: "revalidate", type(None): "miss"}
    assert kind[type(decision)] == expected
    exact = policy.lookup("GET", URL, again, [entry], fast=False)  # hishel alone
    assert type(exact) is type(decision) and getattr(exact, "age", 0) == getattr(
        decision, "age", 0)
    if isinstance(decision, policy.Hit):
        assert abs(decision.age - later) <= 1  # Age: how long ago the response was made
    if isinstance(decision, policy.Revalidate):  # asks with the entry's own validators
        validators = {"if-none-match": entry.header("etag"),
                      "if-modified-since": entry.header("last-modified")}
        assert decision.conditions == [(k, v) for k, v in validators.items() if v is not None]


def test_client_validators_get_a_304_from_a_fresh_entry():
    entry = _entry(policy.with_date([("cache-control", "max-age=60"), ("etag", 'W/"7"'),
                                     ("last-modified", _date(3600))]))
    assert policy.lookup("GET", URL, {"if-none-match": ['"7"']}, [entry]).not_modified
    assert not policy.lookup("GET", URL, {"if-none-match": ['"8"']}, [entry]).not_modified
    assert policy.lookup("GET", URL, {"if-modified-since": [_date(10)]}, [entry]).not_modified
    assert not policy.lookup("GET", URL, {"if-modified-since": [_date(7200)]},
                             [entry]).not_modified
    assert not policy.lookup("GET", URL, {}, [entry]).not_modified


def test_a_304_refreshes_the_stored_headers():
    entry = _entry(policy.with_date([("cache-control", "max-age=1"), ("etag", '"1"'),
                                     ("x-kept", "yes")], time.time() - 60))
    headers = dict(policy.refreshed(entry, policy.with_date([("etag", '"1"'),
                                                            ("cache-control", "max-age=30")])))
    assert headers["cache-control"] == "max-age=30" and headers["x-kept"] == "yes"
    fresh = _entry(list(headers.items()))
    assert isinstance(policy.lookup("GET", URL, {}, [fresh]), policy.Hit)
    assert policy.refreshed(entry, [("etag", '"2"')]) == []  # not the stored response


def test_urls_have_one_spelling_and_bad_ones_are_refused():
    assert policy.normalize_url("HTTP://B.plt.local:80") == "http://b.plt.local/"
    assert policy.normalize_url("https://x.test:8443/a?b=1") == "https://x.test:8443/a?b=1"
    assert policy.normalize_url("http://B.plt.local.:8080/p?q#frag") == "http://b.plt.local:8080/p?q"
    for bad in ("/relative", "//host/x", "1http://x/", "", " http://x/"):
        with pytest.raises(WattError) as info:
            policy.normalize_url(bad)
        assert info.value.code == "WATT_CACHE_BAD_INVALIDATION"


def test_tags_come_from_the_configured_header():
    headers = [("x-cache-tags", "a, b"), ("x-cache-tags", "b,c"), ("other", "d")]
    assert policy.tags_of(headers, "x-cache-tags") == ("a", "b", "c")


def test_store_is_lru_by_size_and_invalidates_by_key_and_tag():
    def entry(path: str, tags=(), size=0):
        e = _entry([("cache-control", "max-age=60")], url=f"http://b.plt.local/{path}")
        e.body, e.tags = b"x" * size, tuple(tags)
        e.size = policy.OVERHEAD + size
        return e

    store = MemoryStore(max_size=3 * (policy.OVERHEAD + 100))
    first, second, third = entry("1", ["t"], 100), entry("2", ["t", "u"], 100), entry("3", [], 100)
    for e in (first, second, third):
        assert store.put(e) == []
    store.get(first.key)  # used: the least recently used is now the second
    assert store.put(entry("4", [], 100)) == [second]
    assert len(store) == 3 and store.size <= store.max_size and store.sizes["b"] == store.size
    assert store.put(entry("huge", [], 10_000)) == []  # larger than the store: not kept,
    assert len(store) == 3 and store.get("GET http://b.plt.local/huge") == []  # nothing evicted
    store = MemoryStore(max_size=10**6)
    for e in (first, second, third):
        store.put(e)
    assert store.invalidate([], ["t"]) == 2 and store.get(first.key) == []
    assert store.invalidate([third.key], []) == 1 and len(store) == 0 and store.size == 0
    again = entry("1", ["t"], 5)
    store.put(again)
    store.put(entry("1", ["t"], 7))  # the same variant replaces it
    assert len(store) == 1


def test_invalidate_outside_a_runtime_is_a_clear_error():
    import watt.cache

    with pytest.raises(WattError) as info:
        watt.cache.invalidate(tags=["x"])
    assert info.value.code == "WATT_CACHE_UNAVAILABLE"
    with pytest.raises(WattError) as info:
        watt.cache.invalidate(tags="x")
    assert info.value.code == "WATT_CACHE_BAD_INVALIDATION"
    watt.cache.invalidate()  # nothing to drop: nothing to do


# -- a real runtime ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rt():
    config = {"entrypoint": "a", "httpCache": {"entrypoint": True, "maxSize": 64 * 1024},
              "applications": [app_config("a", "cached", workers=2),
                               app_config("b", "cached"),
                               app_config("p", "cached", isolation="process"),
                               app_config("off", "cached")]}
    config["httpCache"]["applications"] = ["a", "b", "p"]
    xdg = Path(tempfile.mkdtemp(prefix="wc-", dir="/tmp"))  # the management socket's folder
    xdg.chmod(0o700)
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(xdg)
    try:
        with RuntimeHandle(config) as handle:
            handle.xdg = xdg
            yield handle
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
        shutil.rmtree(xdg, ignore_errors=True)


def fetch(rt, url: str, **query) -> dict:
    """``a`` calls ``url`` over the mesh; its answer, with the target's body parsed."""
    reply = httpx.get(rt.url + "/fetch", params={"url": url, **query}, timeout=30)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    if data["body"].startswith("{"):
        data["json"] = json.loads(data["body"])
    return data


def stats(rt, app: str) -> dict:
    return rt._call(_snapshot(rt))[app]


async def _snapshot(rt):
    return rt.runtime.cache.snapshot()


def test_a_response_cached_by_one_worker_is_a_hit_for_every_other(rt):
    before = stats(rt, "b") if "b" in rt.runtime.cache.stats else {"hits": 0}
    answers = [fetch(rt, "http://b.plt.local/cached/shared") for _ in range(4)]
    assert {a["json"]["served"] for a in answers} == {1}  # b made it once
    assert len({a["caller"] for a in answers}) == 2  # asked by both workers of a
    assert "age" not in answers[0]["headers"] and all(
        int(a["headers"]["age"]) >= 0 for a in answers[1:])
    assert stats(rt, "b")["hits"] - before["hits"] == 3


def test_process_workers_share_the_store(rt):
    first = fetch(rt, "http://p.plt.local/cached/proc")
    again = fetch(rt, "http://p.plt.local/cached/proc")
    assert first["json"]["pid"] != again["caller"] and again["json"] == first["json"]
    assert "age" in again["headers"]


def test_applications_left_out_are_not_cached(rt):
    served = [fetch(rt, "http://off.plt.local/cached/no")["json"]["served"] for _ in range(2)]
    assert served == [1, 2]


def test_entrypoint_responses_are_cached_and_head_is_its_own_key(rt):
    first = httpx.get(rt.url + "/cached/front")
    second = httpx.get(rt.url + "/cached/front")
    assert first.json() == second.json() and "age" in second.headers
    head = httpx.head(rt.url + "/cached/front")
    assert head.status_code == 200 and "age" not in head.headers  # not stored yet
    assert "age" in httpx.head(rt.url + "/cached/front").headers
    etag_free = httpx.get(rt.url + "/cached/front", headers={"if-none-match": '"x"'})
    assert etag_free.status_code == 200


def test_streamed_answers_are_kept_whole_up_to_max_entry_size(rt):
    small = [fetch(rt, "http://b.plt.local/stream/small") for _ in range(2)]
    assert small[0]["body"] == small[1]["body"] == "1:0:" + "y" * 10 + "1:1:" + "y" * 10 \
        + "1:2:" + "y" * 10 and "age" in small[1]["headers"]
    # 3 x 400 KB: over maxEntrySize (1 MiB by default), passed on but not stored
    big = [fetch(rt, "http://b.plt.local/stream/big?size=400000") for _ in range(2)]
    assert big[1]["body"].startswith("2:0:") and "age" not in big[1]["headers"]
    assert len(big[1]["body"]) == 3 * 400_004


def test_the_asgi_path_of_the_entrypoint_is_cached_too(rt):
    """Runtime.inject takes entrypoint.forward, the ASGI engines' path (granian,
    hypercorn), where the watt engine has its own."""
    first = rt.inject("a", "GET", "/cached/asgi")
    second = rt.inject("a", "GET", "/cached/asgi")
    assert second.status == 200 and second.body == first.body
    assert second.header("age") is not None and first.header("age") is None


def test_stale_entries_are_revalidated_and_a_304_refreshes_them(rt):
    url = "http://b.plt.local/doc?etag=1&h=cache-control:no-cache"
    first = fetch(rt, url)
    second = fetch(rt, url)
    assert second["status"] == 200 and second["json"] == first["json"]  # the stored body
    assert second["headers"]["age"] == "0"  # just validated
    counts = fetch(rt, "http://b.plt.local/counts")["json"]
    assert counts["/doc"] == 1 and counts["/doc:304"] == 1  # b answered 304, not the body
    fetch(rt, "http://b.plt.local/bump?path=/doc")  # the document changes
    third = fetch(rt, url)
    assert third["json"]["version"] == 1 and "age" not in third["headers"]


def test_an_application_invalidates_by_key_and_by_tag(rt):
    one, two = "http://b.plt.local/cached/one", "http://b.plt.local/cached/two"
    assert fetch(rt, one)["json"]["served"] == fetch(rt, one)["json"]["served"]
    fetch(rt, two)
    assert httpx.get(rt.url + "/invalidate", params={"key": one}).text == "ok"
    assert "age" not in fetch(rt, one)["headers"]  # gone: asked again
    assert "age" in fetch(rt, two)["headers"]  # untouched
    assert httpx.get(rt.url + "/invalidate", params={"tag": "two"}).text == "ok"
    assert "age" not in fetch(rt, two)["headers"]
    assert "age" in fetch(rt, one)["headers"]


def test_a_worker_stores_and_looks_up_its_own_calls(rt):
    """watt.cache.store / lookup: the path for external calls made by workers."""
    url = "https://api.example.test/rates?x=1"

    def lookup(target: str) -> dict:
        return httpx.get(rt.url + "/ext-lookup", params={"url": target}).json()

    assert not lookup(url)["hit"]
    assert httpx.get(rt.url + "/ext-store", params={"url": url}).text == "stored"
    answers = [lookup(url) for _ in range(2)]
    assert all(a["hit"] and a["body"] == "external body" and a["status"] == 200
               and "age" in a["headers"] for a in answers)
    assert len({a["caller"] for a in answers}) == 2  # stored by one worker, seen by both
    assert not lookup("https://api.example.test/rates?x=2")["hit"]
    assert httpx.get(rt.url + "/invalidate", params={"tag": "ext"}).text == "ok"
    assert not lookup(url)["hit"]


def test_a_successful_unsafe_request_drops_the_urls_entries(rt):
    url = "http://b.plt.local/cached/posted"
    fetch(rt, url)
    assert "age" in fetch(rt, url)["headers"]
    assert fetch(rt, url, method="OPTIONS")["status"] == 200  # safe: nothing dropped
    assert "age" in fetch(rt, url)["headers"]
    assert fetch(rt, url, method="POST")["status"] == 200
    assert "age" not in fetch(rt, url)["headers"]  # RFC 9111 §4.4
    httpx.get(rt.url + "/cached/front-posted")  # the entrypoint's own entries too
    assert "age" in httpx.get(rt.url + "/cached/front-posted").headers
    assert httpx.delete(rt.url + "/cached/front-posted").status_code == 200
    assert "age" not in httpx.get(rt.url + "/cached/front-posted").headers  # made again


def test_eviction_under_max_size_and_metrics(rt):
    before = stats(rt, "b")["evictions"]
    for i in range(6):  # 6 x 16 KB > maxSize (64 KB)
        fetch(rt, f"http://b.plt.local/cached/big{i}?size=16000")
    after = stats(rt, "b")
    assert after["evictions"] - before >= 2 and rt.runtime.cache.store.size <= 64 * 1024
    text = rt._call(rt.runtime.metrics.exposition()).decode()
    assert f'watt_http_cache_evictions_total{{applicationId="b"}} {after["evictions"]}.0' in text
    assert 'watt_http_cache_hits_total{applicationId="b"}' in text
    assert 'watt_http_cache_size_bytes{applicationId="b"}' in text


def test_management_api_and_cli_invalidate(rt):
    def cached(path: str) -> bool:
        return "age" in httpx.get(rt.url + path).headers

    for path in ("/cached/k", "/cached/t", "/cached/u"):
        httpx.get(rt.url + path)
        assert cached(path)
    socket = rt.xdg / "watt" / f"{os.getpid()}.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)),
                      base_url="http://watt") as api:
        reply = api.post("/api/v1/cache/invalidate", json={"keys": [rt.url + "/cached/k"]})
        assert reply.status_code == 200 and reply.json() == {"dropped": 1}
        assert not cached("/cached/k") and cached("/cached/t")
        bad = api.post("/api/v1/cache/invalidate", json={"keys": ["/relative"]})
        assert bad.status_code == 400 and "not a full URL" in bad.json()["message"]
    runner = CliRunner()
    done = runner.invoke(cli.main, ["cache", "invalidate", str(os.getpid()), "--tag", "t",
                                    "--tag", "nothing"])
    assert done.exit_code == 0 and done.output.strip() == "1 entry dropped", done.output
    assert not cached("/cached/t") and cached("/cached/u")
    usage = runner.invoke(cli.main, ["cache", "invalidate"])
    assert usage.exit_code == 2 and "--key or --tag" in usage.output
