"""The management endpoints the dashboard reads and acts through.

They are ordinary management routes (unix socket, TCP with the bearer token,
and the dashboard's own listener alike):

- ``GET /stats``: one compact snapshot of every worker (request count,
  errors, latency quantiles, ELU, CPU, memory) and every mesh edge (caller,
  target, calls, errors); the page polls it every second and turns counters
  into rates itself, so the runtime keeps no history;
- ``GET /traces``: the latest traces, spans grouped by trace id, from the
  memory exporter the dashboard keeps while it is on;
- ``PUT /applications/{id}/log-level``: change an application's log level
  at once (a LOG_LEVEL frame to each worker) and for the workers it starts
  later;
- ``POST /dashboard``, ``GET /dashboard``, ``DELETE /dashboard``: start,
  describe and stop the dashboard's listener (``watt admin``).

:func:`summarize` and :func:`group_traces` are pure, tested without a runtime.
"""

from __future__ import annotations

import time

import msgspec

from ...channel.protocol import LOG_LEVEL
from ...config_dashboard import is_address
from ...worker.metrics import QUANTILES, resident_memory
from ...worker.telemetry import LEVELS
from ..api import ManagementApp, Request, bad_request, route
from ..openapi import json_body, json_response

_P50, _P95, _P99 = (QUANTILES.index(q) for q in (0.5, 0.95, 0.99))
_NUMBER = {"type": ["number", "null"]}
_WORKER_STATS = {
    "type": "object",
    "required": ["app", "worker", "isolation", "requests", "errors", "durationSum", "p50",
                 "p95", "p99", "inFlight", "elu", "cpu", "memory"],
    "properties": {"app": {"type": "string"}, "worker": {"type": "integer"},
                   "isolation": {"type": "string"},
                   "requests": {"type": "integer", "description": "Answered so far."},
                   "errors": {"type": "integer", "description": "Answered with a 5xx."},
                   "durationSum": {"type": "number", "description": "Seconds, summed."},
                   "p50": _NUMBER, "p95": _NUMBER, "p99": _NUMBER,
                   "inFlight": {"type": "integer"}, "elu": _NUMBER, "cpu": _NUMBER,
                   "memory": _NUMBER}}
_EDGE = {"type": "object", "required": ["source", "target", "requests", "errors", "durationSum"],
         "properties": {"source": {"type": "string"}, "target": {"type": "string"},
                        "requests": {"type": "integer"}, "errors": {"type": "integer"},
                        "durationSum": {"type": "number"}}}
STATS_SCHEMA = {
    "type": "object", "required": ["time", "process", "workers", "mesh"],
    "properties": {"time": {"type": "number", "description": "Unix time of the snapshot."},
                   "process": {"type": "object", "properties": {"memory": _NUMBER,
                                                                "cpu": _NUMBER}},
                   "workers": {"type": "array", "items": _WORKER_STATS},
                   "mesh": {"type": "array", "items": _EDGE}}}
_SPAN = {"type": "object", "required": ["spanId", "name", "app", "start", "end"],
         "properties": {"spanId": {"type": "string"}, "parentSpanId": {"type": ["string", "null"]},
                        "name": {"type": "string"}, "kind": {"type": "string"},
                        "app": {"type": "string"}, "start": {"type": "number"},
                        "end": {"type": "number"}, "error": {"type": "boolean"}}}
TRACES_SCHEMA = {
    "type": "object", "required": ["enabled", "traces"],
    "properties": {"enabled": {"type": "boolean", "description": "false: no span is recorded "
                                                                 "(the config has neither "
                                                                 "`telemetry` nor `dashboard`)."},
                   "traces": {"type": "array", "items": {
                       "type": "object", "required": ["traceId", "start", "duration", "spans"],
                       "properties": {"traceId": {"type": "string"},
                                      "start": {"type": "number"},
                                      "duration": {"type": "number"},
                                      "spans": {"type": "array", "items": _SPAN}}}}}}
DASHBOARD_SCHEMA = {
    "type": "object", "required": ["enabled", "url"],
    "properties": {"enabled": {"type": "boolean"},
                   "url": {"type": ["string", "null"],
                           "description": "The page, its token in the query."}}}


def summarize(snapshots: list[dict]) -> tuple[list[dict], list[dict]]:
    """Worker snapshots (``MetricsCollector.gather``) as dashboard rows and mesh edges."""
    workers, edges = [], {}
    for snap in snapshots:
        data = snap["data"]
        requests = data.get("requests", ())
        quantiles = data.get("quantiles") or []

        def quantile(index: int, quantiles=quantiles) -> float | None:
            return quantiles[index] if len(quantiles) > index else None

        workers.append({
            "app": snap["app"], "worker": snap["worker"], "isolation": snap["isolation"],
            "requests": sum(entry[2] for entry in requests),
            "errors": sum(entry[2] for entry in requests if int(entry[1]) >= 500),
            "durationSum": sum(entry[3] for entry in requests),
            "p50": quantile(_P50), "p95": quantile(_P95), "p99": quantile(_P99),
            "inFlight": data.get("inFlight", 0), "elu": data.get("elu"),
            "cpu": data.get("cpu"), "memory": data.get("memory")})
        for target, _method, status, count, total, _buckets in data.get("mesh", ()):
            edge = edges.setdefault((snap["app"], target), {
                "source": snap["app"], "target": target, "requests": 0, "errors": 0,
                "durationSum": 0.0})
            edge["requests"] += count
            edge["durationSum"] += total
            if int(status) >= 500 or int(status) == 0:  # 0: no response at all
                edge["errors"] += count
    return workers, list(edges.values())


def group_traces(spans: list[dict], limit: int) -> list[dict]:
    """The ``limit`` latest traces (latest first), each with its spans by start time;
    times in milliseconds since the Unix epoch."""
    traces: dict[str, list[dict]] = {}
    for span in spans:
        resource = span.get("resource") or {}
        status = span.get("status") or {}
        traces.setdefault(span["traceId"], []).append({
            "spanId": span["spanId"], "parentSpanId": span.get("parentSpanId") or None,
            "name": span["name"], "kind": span.get("kind", "INTERNAL"),
            "app": resource.get("watt.application") or resource.get("service.name", ""),
            "start": span["startTimeUnixNano"] / 1e6, "end": span["endTimeUnixNano"] / 1e6,
            "error": status.get("code") == "ERROR"})
    out = []
    for trace_id, members in traces.items():
        members.sort(key=lambda s: s["start"])
        start = members[0]["start"]
        end = max(s["end"] for s in members)
        out.append({"traceId": trace_id, "start": start, "duration": end - start,
                    "spans": members})
    out.sort(key=lambda t: t["start"] + t["duration"], reverse=True)
    return out[:limit]


@route("GET", "/stats", summary="Every worker's counters and the mesh's edges, compact",
       description="What the dashboard polls every second: counters since each worker "
                   "started (the page turns them into rates), the latest latency "
                   "quantiles (seconds), ELU, CPU seconds and memory.",
       responses={200: json_response("The snapshot.", STATS_SCHEMA)}, tags=["observability"])
async def stats(api: ManagementApp, request: Request) -> dict:
    workers, mesh = summarize(await api.runtime.metrics.gather())
    return {"time": time.time(), "process": {"memory": resident_memory(),
                                             "cpu": time.process_time()},
            "workers": workers, "mesh": mesh}


@route("GET", "/traces", summary="The latest traces, spans grouped by trace",
       parameters=[{"name": "limit", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    "description": "How many traces (default 20)."}],
       responses={200: json_response("Latest first.", TRACES_SCHEMA),
                  400: json_response("A bad limit.", "Error")}, tags=["observability"])
def traces(api: ManagementApp, request: Request) -> dict:
    unknown = sorted(set(request.query) - {"limit"})
    if unknown:
        raise bad_request(f"unknown query parameter(s) {', '.join(unknown)}; this endpoint "
                          "takes limit")
    raw = request.arg("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise bad_request(f"limit must be an integer from 1 to 500, not {raw!r}")
    return {"enabled": api.runtime.tracing is not None,
            "traces": group_traces(api.runtime.spans(), int(raw))}


_LEVEL_BODY = {"type": "object", "required": ["level"], "additionalProperties": False,
               "properties": {"level": {"enum": sorted(LEVELS)}},
               "examples": [{"level": "info"}]}


@route("PUT", "/applications/{id}/log-level",
       summary="Change an application's log level now, and for its next workers",
       request_body=json_body(_LEVEL_BODY, "The new level.", required=True),
       responses={200: json_response("The level in force.", {
           "type": "object", "required": ["id", "level", "workers"],
           "properties": {"id": {"type": "string"}, "level": {"type": "string"},
                          "workers": {"type": "integer",
                                      "description": "Workers told at once."}}})},
       tags=["applications"], operation_id="set_log_level")
def set_log_level(api: ManagementApp, request: Request) -> dict:
    pool = api.pool(request.params["id"])
    body = request.json()
    if not isinstance(body, dict) or set(body) != {"level"} or \
            not isinstance(body["level"], str) or body["level"] not in LEVELS:
        raise bad_request(f'the body must be {{"level": one of {", ".join(sorted(LEVELS))}}}')
    level = body["level"]
    # Workers started later (restarts, scaling) read it from the application's config.
    pool.app = msgspec.structs.replace(
        pool.app, logger=msgspec.structs.replace(pool.app.logger, level=level))
    told = 0
    for worker in list(pool.workers):
        channel = worker.channel
        if channel is not None and not channel.lost:
            channel.send((LOG_LEVEL, 0, level))
            told += 1
    return {"id": pool.id, "level": level, "workers": told}


def _dashboard_state(api: ManagementApp) -> dict:
    server = getattr(api, "dashboard", None)
    return {"enabled": server is not None, "url": server.url if server else None}


@route("GET", "/dashboard", summary="Whether the dashboard is on, and its URL",
       responses={200: json_response("The dashboard.", DASHBOARD_SCHEMA)}, tags=["dashboard"])
def dashboard(api: ManagementApp, request: Request) -> dict:
    return _dashboard_state(api)


@route("POST", "/dashboard", summary="Start the dashboard (or answer the running one)",
       description="Serves the dashboard page and this API on hostname:port (default "
                   "127.0.0.1 and a free port), behind a random token given in the URL. "
                   "While it is on, the runtime keeps the latest spans in memory.",
       request_body=json_body({"type": "object", "additionalProperties": False, "properties": {
           "hostname": {"anyOf": [{"type": "string", "format": "ipv4"},
                                  {"type": "string", "format": "ipv6"},
                                  {"const": "localhost"}],
                        "description": "An IP address, or localhost (default 127.0.0.1)."},
           "port": {"type": "integer", "minimum": 0, "maximum": 65535}}},
           "Where to listen: all keys optional, `{}` for the defaults.", required=True),
       responses={200: json_response("The dashboard.", DASHBOARD_SCHEMA),
                  409: json_response("It cannot listen there (`WATT_DASHBOARD_UNAVAILABLE`), "
                                     "or it runs elsewhere already.", "Error")},
       tags=["dashboard"], operation_id="start_dashboard")
async def start_dashboard(api: ManagementApp, request: Request) -> dict:
    from .server import DashboardServer

    body = request.json()
    if not isinstance(body, dict) or set(body) - {"hostname", "port"}:
        raise bad_request('the body must be an object with "hostname" and "port" (both '
                          "optional: {} for 127.0.0.1 and a free port)")
    hostname, port = body.get("hostname", "127.0.0.1"), body.get("port", 0)
    if not isinstance(hostname, str) or not is_address(hostname):
        raise bad_request(f"hostname must be an IP address or localhost, not {hostname!r}")
    if isinstance(port, float) and port.is_integer():  # JSON's 8080.0 is an integer too
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise bad_request(f"port must be an integer from 0 to 65535, not {port!r}")
    current = getattr(api, "dashboard", None)
    if current is None:
        server = DashboardServer(api, hostname, port)
        await server.start()
        api.dashboard = server
    elif ("hostname" in body and hostname != current.hostname) or port not in (0, current.port):
        raise DashboardServer.busy(current)
    return _dashboard_state(api)


@route("DELETE", "/dashboard", summary="Stop the dashboard",
       responses={200: json_response("The dashboard (now off).", DASHBOARD_SCHEMA)},
       tags=["dashboard"], operation_id="stop_dashboard")
async def stop_dashboard(api: ManagementApp, request: Request) -> dict:
    server = getattr(api, "dashboard", None)
    if server is not None:
        api.dashboard = None
        await server.stop()
    return _dashboard_state(api)

