"""watt.serverless: AWS's sample events (tests/events/) through the whole runtime, fed
without a socket; the translation itself is pure and tested on its own first."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from support import APPS

from watt.errors import WattError
from watt.serverless import make_handler, to_request, to_response

EVENTS = Path(__file__).resolve().parent / "events"


def _event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def test_api_gateway_rest_event_becomes_a_request() -> None:
    request = to_request(_event("apigw_v1"))
    assert (request.kind, request.method, request.path) == ("v1", "POST", "/hello/world")
    # multiValueQueryStringParameters win; values are re-encoded (API Gateway decoded them).
    assert request.query == b"foo=bar&foo=baz&q=a%20b%26c"
    assert (b"x-custom", b"one") in request.headers and (b"x-custom", b"two") in request.headers
    assert request.body == b'{"test":"body"}' and request.client == "127.0.0.1"
    assert request.scope()["server"] == ("1234567890.execute-api.us-east-1.amazonaws.com", 443)


def test_http_api_v2_event_becomes_a_request() -> None:
    request = to_request(_event("apigw_v2"))
    assert (request.kind, request.method, request.path) == ("v2", "POST", "/my/path")
    assert request.query == b"parameter1=value1&parameter1=value2&parameter2=value"
    assert (b"cookie", b"cookie1; cookie2") in request.headers
    assert request.client == "192.0.2.1" and request.body == b"Hello from Lambda"


def test_alb_events_keep_the_query_as_received() -> None:
    single = to_request(_event("alb"))
    assert single.kind == "alb" and not single.multi
    assert single.query == b"query=1234ABCD&name=a%20b"  # not encoded twice
    assert single.client == "72.12.164.125" and single.scope()["scheme"] == "http"
    multi = to_request(_event("alb_multi"))
    assert multi.multi and multi.query == b"myKey=val1&myKey=val2"
    assert multi.body == bytes([0, 1, 2, 253, 254, 255]) + b"\x89PNG\r\n\x1a\n"
    assert (b"cookie", b"name1=value1; name2=value2") in multi.headers


def test_responses_take_the_shape_of_their_event() -> None:
    headers = [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1"),
               (b"set-cookie", b"b=2"), (b"x-multi", b"a"), (b"x-multi", b"b")]
    v2 = to_response(to_request(_event("apigw_v2")), 200, headers, b"hi")
    assert v2 == {"statusCode": 200, "isBase64Encoded": False, "body": "hi",
                  "cookies": ["a=1", "b=2"],
                  "headers": {"content-type": "text/plain", "x-multi": "a,b"}}
    v1 = to_response(to_request(_event("apigw_v1")), 404, headers, b"\xff\x00")
    assert v1["isBase64Encoded"] and base64.b64decode(v1["body"]) == b"\xff\x00"
    assert v1["multiValueHeaders"]["set-cookie"] == ["a=1", "b=2"]
    alb = to_response(to_request(_event("alb")), 404, headers, b"")
    assert alb["statusDescription"] == "404 Not Found" and alb["headers"]["x-multi"] == "b"


def test_an_unknown_event_is_a_watt_error() -> None:
    for event in ({"Records": []}, ["not", "an", "object"]):
        with pytest.raises(WattError) as caught:
            to_request(event)
        assert caught.value.code == "WATT_SERVERLESS_EVENT"
    with pytest.raises(WattError, match="base64"):
        to_request({**_event("alb_multi"), "body": "***"})


@pytest.fixture(scope="module")
def handler():
    handle = make_handler({"applications": [
        {"id": "web", "path": str(APPS / "lambda_echo"), "app": "main:app"}]})
    yield handle
    if handle.host is not None:
        handle.host.close()


def test_every_sample_event_through_the_runtime_started_once(handler) -> None:
    assert handler.host is None  # nothing starts before the first invocation
    v1 = handler(_event("apigw_v1"))
    host = handler.host
    assert v1["statusCode"] == 201 and not v1["isBase64Encoded"]
    seen = json.loads(v1["body"])
    assert (seen["method"], seen["path"], seen["query"]) == \
        ("POST", "/hello/world", "foo=bar&foo=baz&q=a%20b%26c")
    assert seen["headers"]["x-custom"] == ["one", "two"] and seen["body"] == '{"test":"body"}'
    assert seen["client"] == "127.0.0.1" and seen["scheme"] == "https"
    assert v1["multiValueHeaders"]["set-cookie"] == ["session=abc; Path=/", "theme=dark"]
    assert v1["multiValueHeaders"]["x-multi"] == ["a", "b"]

    v2 = handler(_event("apigw_v2"))
    assert handler.host is host  # the same runtime, not a second cold start
    assert v2["statusCode"] == 201
    assert v2["cookies"] == ["session=abc; Path=/", "theme=dark"]
    assert v2["headers"]["x-multi"] == "a,b" and "set-cookie" not in v2["headers"]
    seen = json.loads(v2["body"])
    assert seen["headers"]["cookie"] == ["cookie1; cookie2"] and seen["body"] == \
        "Hello from Lambda"
    assert json.loads(handler(_event("apigw_v1"))["body"])["pid"] == seen["pid"]

    alb = handler(_event("alb"))
    assert (alb["statusCode"], alb["statusDescription"]) == (200, "200 OK")
    assert json.loads(alb["body"])["query"] == "query=1234ABCD&name=a%20b"
    assert alb["headers"]["set-cookie"] == "theme=dark"  # single-value mode keeps one

    # A binary body goes in and comes back byte for byte, base64 both ways.
    event = _event("alb_multi")
    binary = handler(event)
    assert binary["statusCode"] == 200 and binary["isBase64Encoded"] is True
    assert binary["body"] == event["body"]
    assert binary["multiValueHeaders"]["content-type"] == ["application/octet-stream"]
    blob = bytes(range(256)) * 64
    big = handler({**_event("apigw_v2"), "rawPath": "/binary", "isBase64Encoded": True,
                   "body": base64.b64encode(blob).decode()})
    assert big["isBase64Encoded"] and base64.b64decode(big["body"]) == blob
    assert handler.host is host
