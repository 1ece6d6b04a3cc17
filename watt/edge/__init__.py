"""The edge pipeline: checks a request passes at the entrypoint before any app sees it.

Runs on the main loop, in the entrypoint engine (``watt/http1.py`` and the ASGI
engines of ``watt/entrypoint.py``), only when :func:`build_pipeline` found a
stage configured; with none, the engines never build an :class:`EdgeRequest`
and the hot path is what it was.  (Two things happen on every request even
then, in :func:`watt.edge.proxy.edge_headers`: incoming ``x-watt-*`` and the
authenticated-user header are dropped, and ``x-forwarded-*`` are kept only
from ``server.trustedProxies``.)

A stage is a :class:`Stage` made by a factory registered under a name with
:func:`register_stage`.  The names below run in this order, any other name after
them in registration order::

    security-headers -> rate-limit -> cors -> auth -> validation

``check`` runs in that order and may answer instead of the application
(an :class:`EdgeReply`), possibly after awaiting something (``check`` may
return an awaitable: the engine then takes a slower path for that request
only).  When a stage's ``wants_body`` says so, the engine reads the whole
body (bounded by ``limits.maxBodySize``, or :data:`BODY_CAP` when that is
off) and calls ``check_body``.  On the way back, ``on_response`` runs in the
reverse order; for a reply made by a stage, only the stages before it see it
(as middleware would).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from typing import NamedTuple

#: The stage names whose order is fixed; others run after them.
ORDER = ("security-headers", "rate-limit", "cors", "auth", "validation")
#: Modules that register stages when imported (a missing one is skipped, so a
#: stage module can be added without touching this list's users).
BUILTIN = ("watt.edge.ratelimit", "watt.edge.cors", "watt.edge.auth", "watt.edge.validation",
           "watt.edge.security")

_FACTORIES: dict[str, Callable] = {}
#: Largest body read for ``check_body`` when ``limits.maxBodySize`` is 0 (off): the
#: edge holds it in memory, so it is never unbounded.
BODY_CAP = 16 * 1024 * 1024


class EdgeRequest:
    """One request at the edge, built only when the pipeline is not empty.

    ``headers`` is the list the application will get (lower-case names; a
    stage may remove or append pairs); ``client`` and ``scheme`` are already
    rewritten from a trusted proxy's ``x-forwarded-*``; ``app`` is the
    application the request goes to (through a gateway: the one its routes
    pick for this path); ``state`` is for a stage to keep something for its
    ``on_response``."""

    __slots__ = ("method", "path", "query", "headers", "client", "scheme", "app", "state")

    def __init__(self, method: str, path: str, query: bytes, headers: list,
                 client: tuple | None, scheme: str, app: str) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.client = client
        self.scheme = scheme
        self.app = app
        self.state: dict = {}

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class EdgeReply(NamedTuple):
    """A stage's answer instead of the application's."""

    status: int
    headers: list
    body: bytes


def problem(status: int, code: str, title: str, detail: str | None = None,
            headers: list | None = None, **members) -> EdgeReply:
    """An ``application/problem+json`` (RFC 9457) reply; ``code`` is a stable
    ``WATT_...`` code, sent as the ``code`` member (and the ``type`` URI)."""
    doc = {"type": f"urn:watt:error:{code}", "title": title, "status": status, "code": code}
    if detail is not None:
        doc["detail"] = detail
    doc.update(members)
    body = json.dumps(doc, separators=(",", ":")).encode()
    return EdgeReply(status, [(b"content-type", b"application/problem+json"),
                              (b"content-length", str(len(body)).encode()),
                              *(headers or ())], body)


class Stage:
    """Base of a stage; every method is optional (the pipeline calls only overridden ones)."""

    def check(self, req: EdgeRequest):
        """None to let the request go on, an :class:`EdgeReply` to answer it, or an
        awaitable of either."""
        return None

    def wants_body(self, req: EdgeRequest) -> bool:
        """True when ``check_body`` needs this request's whole body."""
        return False

    def check_body(self, req: EdgeRequest, body: bytes):
        """None, an :class:`EdgeReply` or an awaitable of either, given the whole body."""
        return None

    def on_response(self, req: EdgeRequest, status: int, headers: list) -> list:
        """The response headers (pairs of lower-case bytes), changed or not."""
        return headers


def register_stage(name: str, factory: Callable) -> None:
    """``factory(config, runtime_info)`` returns a :class:`Stage`, or None when its
    config turns it off.  Registering a name again replaces the factory."""
    _FACTORIES[name] = factory


def _overrides(stage: Stage, method: str) -> bool:
    return getattr(type(stage), method) is not getattr(Stage, method)


class Pipeline:
    """The stages of one runtime, in order; the engines call it."""

    __slots__ = ("_body", "_checks", "_responders", "info", "stages")

    def __init__(self, stages: list, info=None) -> None:
        self.stages = stages
        self.info = info
        self._checks = [(i, s.check) for i, s in enumerate(stages) if _overrides(s, "check")]
        self._body = [(i, s) for i, s in enumerate(stages)
                      if _overrides(s, "wants_body") or _overrides(s, "check_body")]
        self._responders = [(i, s.on_response) for i, s in reversed(list(enumerate(stages)))
                            if _overrides(s, "on_response")]

    def request(self, method: str, path: str, query: bytes, headers: list,
                client: tuple | None, scheme: str) -> EdgeRequest:
        """The :class:`EdgeRequest` for these fields, its ``app`` filled in."""
        info = self.info
        app = info.app_for(path) if info is not None else ""
        return EdgeRequest(method, path, query, headers, client, scheme, app)

    def check(self, req: EdgeRequest):
        """None (go on), an :class:`EdgeReply`, or an awaitable of one of them."""
        for n, (i, check) in enumerate(self._checks):
            result = check(req)
            if result is None:
                continue
            if isinstance(result, EdgeReply):
                return self._replied(req, i, result)
            return self._slow(req, self._checks[n + 1:], i, result)
        return None

    async def _slow(self, req: EdgeRequest, rest: list, i: int, pending):
        result = await pending
        if result is not None:
            return self._replied(req, i, result)
        for i, check in rest:
            result = check(req)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return self._replied(req, i, result)
        return None

    def wants_body(self, req: EdgeRequest) -> bool:
        return any(stage.wants_body(req) for _, stage in self._body)

    def check_body(self, req: EdgeRequest, body: bytes):
        """As :meth:`check`, for the stages that look at the body."""
        for n, (i, stage) in enumerate(self._body):
            result = stage.check_body(req, body)
            if result is None:
                continue
            if isinstance(result, EdgeReply):
                return self._replied(req, i, result)
            rest = [(j, lambda r, s=s: s.check_body(r, body)) for j, s in self._body[n + 1:]]
            return self._slow(req, rest, i, result)
        return None

    def on_response(self, req: EdgeRequest, status: int, headers: list) -> list:
        for _, respond in self._responders:
            headers = respond(req, status, headers)
        return headers

    def failed(self, req: EdgeRequest) -> EdgeReply:
        """The 500 when a stage raised (logged by the engine)."""
        return self._replied(req, len(self.stages), problem(
            500, "WATT_EDGE_FAILED", "Internal Server Error", "an edge stage failed"))

    def _replied(self, req: EdgeRequest, index: int, reply: EdgeReply) -> EdgeReply:
        """A stage answered: the stages before it see the reply on its way out."""
        headers = list(reply.headers)
        for i, respond in self._responders:
            if i < index:
                headers = respond(req, reply.status, headers)
        return EdgeReply(reply.status, headers, reply.body)


def _load_builtin() -> None:
    for module in BUILTIN:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def build_pipeline(config, runtime_info) -> Pipeline | None:
    """The stages the config turns on, in order, or None when there is none.

    ``config`` is the loaded config (:class:`watt.config.LoadedConfig`);
    ``runtime_info`` an :class:`watt.edge.info.EdgeInfo` (the entrypoint, the
    applications, the TLS state, ``app_for(path)``)."""
    _load_builtin()
    rank = {name: i for i, name in enumerate(ORDER)}
    names = sorted(_FACTORIES, key=lambda n: rank.get(n, len(ORDER)))  # stable: others in order
    stages = [stage for name in names
              if (stage := _FACTORIES[name](config, runtime_info)) is not None]
    return Pipeline(stages, runtime_info) if stages else None
