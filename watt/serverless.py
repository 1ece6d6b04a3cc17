"""``watt.serverless``: the whole runtime inside an AWS Lambda function.

Set the function's handler to ``watt.serverless.handler`` (the config is
``$WATT_CONFIG``, else ``watt.json`` or ``watt.toml`` in ``$LAMBDA_TASK_ROOT`` or
the current folder), or build one with ``make_handler(config_path)``.

The runtime starts once per container, on the first invocation (the cold
start), on an event loop of its own thread; later invocations reuse it, and a
frozen container keeps it.  Each event becomes an ASGI request handed to the
entrypoint's forwarder — the very callable the HTTP engine calls, so limits and
routing are the same — with no socket on the way.  Three event kinds are
understood: API Gateway REST (payload 1.0), API Gateway HTTP API (payload 2.0)
and an Application Load Balancer target; each answer is written back in the
shape that kind expects (base64 for binary bodies, multi-value headers,
cookies).  Translation is pure (:func:`to_request`, :func:`to_response`), tested
on AWS's sample events.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote, urlencode

import msgspec

from .errors import WattError

#: Content types whose bodies go back as text (if they are UTF-8); others are base64.
_TEXT = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "graphql")


class Request(msgspec.Struct):
    """One HTTP request out of an event: what the ASGI scope is built from."""

    kind: str  # "v1", "v2" or "alb": how to answer
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: str
    multi: bool = True  # alb: answer with multiValueHeaders (the target group's setting)

    def scope(self) -> dict:
        host = next((v.decode("latin-1") for k, v in self.headers if k == b"host"), "lambda")
        proto = next((v.decode("latin-1") for k, v in self.headers
                      if k == b"x-forwarded-proto"), "https")
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1", "method": self.method, "scheme": proto,
                "path": self.path, "raw_path": quote(self.path).encode(),
                "query_string": self.query, "root_path": "", "headers": self.headers,
                "client": (self.client, 0), "server": (host, 443 if proto == "https" else 80)}


def _kind(event: dict) -> str:
    if not isinstance(event, dict):
        raise WattError(f"a Lambda event is a JSON object, got {type(event).__name__}",
                        code="WATT_SERVERLESS_EVENT")
    if event.get("version") == "2.0" and "rawPath" in event:
        return "v2"
    if "elb" in (event.get("requestContext") or {}):
        return "alb"
    if "httpMethod" in event:
        return "v1"
    raise WattError("not an API Gateway (REST or HTTP API) or Application Load Balancer "
                    f"event (keys: {', '.join(sorted(event)) or 'none'})",
                    code="WATT_SERVERLESS_EVENT")


#: The fields a translation reads, and the JSON type each must have when present.
_FIELDS = {"httpMethod": str, "path": str, "rawPath": str, "rawQueryString": str,
           "body": str, "isBase64Encoded": bool, "headers": dict, "multiValueHeaders": dict,
           "queryStringParameters": dict, "multiValueQueryStringParameters": dict,
           "requestContext": dict, "cookies": list}
_JSON = {str: "a string", bool: "a boolean", dict: "an object", list: "an array"}


def _check_fields(event: dict) -> None:
    """A field of the wrong type is the event's fault, named as such (not a traceback
    from the translation)."""
    fields = [(name, event.get(name), kind) for name, kind in _FIELDS.items()]
    http = (event.get("requestContext") or {})
    if isinstance(http, dict):
        fields += [("requestContext.http", http.get("http"), dict)]
    for name, value, kind in fields:
        if value is not None and not isinstance(value, kind):
            raise WattError(f"the event's `{name}` is {type(value).__name__}, not "
                            f"{_JSON[kind]}", code="WATT_SERVERLESS_EVENT")


def _bytes(text) -> bytes:
    """A header as bytes: latin-1 as HTTP/1.1 has it, UTF-8 for what latin-1 cannot hold."""
    text = str(text)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _body(event: dict) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise WattError("isBase64Encoded is true but the body is not base64",
                            code="WATT_SERVERLESS_EVENT") from None
    return body.encode("utf-8")


def _pairs(event: dict) -> list[tuple[str, str]]:
    """Header pairs from ``multiValueHeaders`` (when present) else ``headers``."""
    multi = event.get("multiValueHeaders")
    if multi:
        return [(name, value) for name, values in multi.items() for value in values or ()]
    return list((event.get("headers") or {}).items())


def to_request(event: dict) -> Request:
    """The request an API Gateway v1/v2 or ALB event carries (pure)."""
    kind = _kind(event)
    _check_fields(event)
    try:
        return _request(kind, event)
    except (AttributeError, TypeError, ValueError) as exc:  # a value inside a field
        raise WattError(f"the {kind} event has a value of the wrong type: {exc}",
                        code="WATT_SERVERLESS_EVENT") from None


def _request(kind: str, event: dict) -> Request:
    context = event.get("requestContext") or {}
    if kind == "v2":
        http = context.get("http") or {}
        pairs = list((event.get("headers") or {}).items())
        if event.get("cookies"):  # v2 moves Cookie headers here, one item per cookie
            pairs = [(k, v) for k, v in pairs if k.lower() != "cookie"]
            pairs.append(("cookie", "; ".join(event["cookies"])))
        method, path = http.get("method") or "GET", event.get("rawPath") or "/"
        query, client = event.get("rawQueryString") or "", http.get("sourceIp", "")
    else:
        pairs = _pairs(event)
        method, path = event.get("httpMethod") or "GET", event.get("path") or "/"
        multi = event.get("multiValueQueryStringParameters")
        single = event.get("queryStringParameters") or {}
        items = [(k, v) for k, vs in multi.items() for v in vs or ()] if multi else \
            list(single.items())
        if kind == "alb":  # the load balancer passes the query as received: no re-encoding
            query = "&".join(f"{k}={v}" for k, v in items)
            forwarded = next((v for k, v in pairs if k.lower() == "x-forwarded-for"), "")
            client = forwarded.split(",")[0].strip()
        else:  # API Gateway decoded the values
            query = urlencode(items, quote_via=quote)
            client = (context.get("identity") or {}).get("sourceIp", "")
    cookies = [v for k, v in pairs if k.lower() == "cookie"]
    if len(cookies) > 1:  # one Cookie header, as HTTP/1.1 has it (frameworks read one)
        pairs = [(k, v) for k, v in pairs if k.lower() != "cookie"] + \
            [("cookie", "; ".join(cookies))]
    headers = [(_bytes(k.lower()), _bytes(v)) for k, v in pairs]
    return Request(kind, method.upper(), path, _bytes(query), headers,
                   _body(event), client or "0.0.0.0",
                   multi=kind != "alb" or "multiValueHeaders" in event)


def _is_text(headers: list[tuple[str, str]], body: bytes) -> bool:
    kind = next((v for k, v in headers if k == "content-type"), "").lower()
    if any(k == "content-encoding" for k, _ in headers):
        return False
    if kind and not any(marker in kind for marker in _TEXT):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def to_response(request: Request, status: int, raw_headers: list, body: bytes) -> dict:
    """The answer in the shape ``request.kind`` expects (pure)."""
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw_headers]
    text = _is_text(headers, body)
    out = {"statusCode": status, "isBase64Encoded": not text,
           "body": body.decode("utf-8") if text else base64.b64encode(body).decode("ascii")}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        multi.setdefault(name, []).append(value)
    if request.kind == "v2":
        out["cookies"] = multi.pop("set-cookie", [])
        out["headers"] = {name: ",".join(values) for name, values in multi.items()}
    elif request.multi:
        out["multiValueHeaders"] = multi
    else:  # an ALB without multi-value headers: one value per name (the last)
        out["headers"] = {name: values[-1] for name, values in multi.items()}
    if request.kind == "alb":
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        out["statusDescription"] = f"{status} {phrase}".rstrip()
    return out


class Host:
    """A started runtime on a loop thread of its own, fed requests without a socket."""

    def __init__(self, config, start_timeout: float = 60.0) -> None:
        from .runtime import Runtime

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever,
                                        name="watt-serverless-loop", daemon=True)
        self._thread.start()
        # Port 0: the HTTP engine listens on loopback only, unused; nothing else may clash.
        self.runtime = Runtime(config, hostname="127.0.0.1", port=0, management=False,
                               start_timeout=start_timeout)
        try:
            self._run(self.runtime.start(), None)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            raise

    def _run(self, coroutine, timeout: float | None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def handle(self, request: Request, timeout: float | None = None) -> dict:
        return to_response(request, *self._run(self._call(request), timeout))

    async def _call(self, request: Request) -> tuple[int, list, bytes]:
        from .runtime import call_buffered

        return await call_buffered(self.runtime.entry_app, request.scope(), request.body)

    def close(self) -> None:
        """Stop the runtime (tests; a Lambda container is frozen, then dropped)."""
        try:
            self._run(self.runtime.stop(), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def make_handler(config_path: str | os.PathLike | dict | None = None):
    """A Lambda handler ``(event, context) -> dict`` for ``config_path``.  The runtime
    starts on the first call and serves every later one; ``handler.host`` is it
    (None before the first call)."""
    lock = threading.Lock()

    def handler(event: dict, context=None) -> dict:
        request = to_request(event)
        with lock:
            if handler.host is None:
                handler.host = Host(config_path if config_path is not None else
                                    default_config())
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return handler.host.handle(request, remaining() / 1000 if remaining else None)

    handler.host = None
    return handler


def default_config() -> str:
    """``$WATT_CONFIG``, else watt.json/watt.toml in ``$LAMBDA_TASK_ROOT`` (or here)."""
    if os.environ.get("WATT_CONFIG"):
        return os.environ["WATT_CONFIG"]
    root = Path(os.environ.get("LAMBDA_TASK_ROOT") or ".")
    for name in ("watt.json", "watt.toml"):
        if (root / name).is_file():
            return str(root / name)
    return str(root)  # load_config says which files it looked for


_default = None


def handler(event: dict, context=None) -> dict:
    """The Lambda handler for the function's own config (``watt.serverless.handler``)."""
    global _default
    if _default is None:
        _default = make_handler()
    return _default(event, context)
