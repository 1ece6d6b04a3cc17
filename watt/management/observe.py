"""Management endpoints for what the runtime observes: ``/metrics`` and ``/logs``.

``GET /metrics`` gathers every worker's metrics (as the runtime's own
``/metrics`` server does), in the Prometheus text format or as JSON.
``GET /logs`` answers the recent lines the runtime keeps (``logger.buffer``)
as JSON lines, filtered by application and level; with ``follow=true`` it
goes on streaming new lines until the client goes away (an empty line every
few seconds tells a dead client apart).
"""

from __future__ import annotations

import asyncio
import json

from ..worker.telemetry import LEVELS
from .api import ManagementApp, Reply, Request, bad_request, route
from .openapi import json_response

HEARTBEAT = 5.0  # seconds between two keep-alive newlines of a followed stream
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def _known(request: Request, *names: str) -> None:
    """Refuse a query parameter the endpoint does not take (a typo would go unseen)."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise bad_request(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                          f"this endpoint takes {', '.join(names)}")


def _arg(request: Request, name: str, default: str | None = None) -> str | None:
    """Query parameter ``name``, given at most once (a repeated one is ambiguous)."""
    values = request.query.get(name) or []
    if len(values) > 1:
        raise bad_request(f"{name} is given {len(values)} times; give it once")
    return values[0] if values else default


def _param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


@route("GET", "/metrics", summary="Every worker's metrics (Prometheus text or JSON)",
       description="The same as the metrics server's /metrics: each ready worker is asked "
                   "for its numbers; samples are labelled applicationId and workerId.",
       parameters=[_param("format", {"enum": ["prometheus", "json"]},
                          "prometheus (default): the text format; json: families with "
                          "their samples.")],
       responses={200: {"description": "The metrics.", "content": {
           "text/plain": {"schema": {"type": "string"}},
           "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
           400: json_response("An unknown format.", "Error")},
       tags=["observability"])
async def metrics(api: ManagementApp, request: Request):
    _known(request, "format")
    fmt = _arg(request, "format", "prometheus")
    if fmt not in ("prometheus", "json"):
        raise bad_request(f"format must be prometheus or json, not {fmt!r}")
    # Imported here: prometheus_client is not loaded at start, only when asked for metrics.
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    from ..observability.metrics_families import as_json

    text = await api.runtime.metrics.exposition()
    if fmt == "json":
        return as_json(text.decode())
    return Reply(body=text, media_type=CONTENT_TYPE_LATEST)


@route("GET", "/logs", summary="Recent log lines, and new ones as they come (follow)",
       description="JSON lines (application/x-ndjson), oldest first.",
       parameters=[
           _param("app", {"type": "string"}, "Only lines of this application (`watt` for "
                  "the runtime's own)."),
           _param("level", {"enum": sorted(LEVELS)}, "Only lines at this level or above."),
           _param("lines", {"type": "integer", "minimum": 0}, "How many recent lines "
                  "(default 100; 0: none, only new ones)."),
           _param("follow", {"type": "boolean"}, "Keep the answer open and stream new "
                  "lines."),
       ],
       responses={200: {"description": "Log lines, one JSON object each.",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                  400: json_response("A bad parameter.", "Error"),
                  404: json_response("`app` names no application "
                                     "(`WATT_MANAGEMENT_UNKNOWN_APP`).", "Error")},
       tags=["observability"])
def logs(api: ManagementApp, request: Request) -> Reply:
    _known(request, "app", "level", "lines", "follow")
    app = _arg(request, "app")
    level = _arg(request, "level")
    if level is not None and level not in LEVELS:
        raise bad_request(f"level must be one of {', '.join(sorted(LEVELS))}")
    try:
        count = int(_arg(request, "lines", "100"))
    except ValueError:
        raise bad_request("lines must be an integer") from None
    if count < 0:
        raise bad_request("lines must be >= 0")
    follow_arg = (_arg(request, "follow") or "false").lower()
    if follow_arg not in _TRUE + _FALSE:
        raise bad_request("follow must be true or false")
    follow = follow_arg in _TRUE
    if app is not None and app != "watt":
        api.pool(app)  # 404 for an application the runtime does not have
    keep = _filter(app, LEVELS[level] if level else 0)
    hub = api.runtime.logs
    recent = [line for line in list(hub.recent) if keep(line)][-count:] if count else []
    queue = hub.subscribe() if follow else None
    return Reply(stream=_lines(hub, recent, queue, keep), media_type="application/x-ndjson")


def _filter(app: str | None, minimum: int):
    def keep(line: str) -> bool:
        if app is None and not minimum:
            return True
        try:
            record = json.loads(line)
        except ValueError:
            return False
        if app is not None and record.get("app") != app:
            return False
        return LEVELS.get(record.get("level"), 20) >= minimum

    return keep


async def _lines(hub, recent: list[str], queue, keep):
    try:
        if recent:
            yield ("\n".join(recent) + "\n").encode()
        if queue is None:
            return
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                yield b"\n"  # keeps proxies open; a closed socket fails here
                continue
            batch = [line] + [queue.get_nowait() for _ in range(queue.qsize())]
            chosen = [item for item in batch if keep(item)]
            if chosen:
                yield ("\n".join(chosen) + "\n").encode()
    finally:
        if queue is not None:
            hub.unsubscribe(queue)
