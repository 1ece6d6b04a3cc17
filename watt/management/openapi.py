"""The OpenAPI 3.1 document of the management API, built from the route table.

``GET /api/v1/openapi.json`` serves it; ``tests/test_openapi.py`` runs
schemathesis against a live runtime with it, so a response that drifts from
its schema fails a test.  Each route declares its own operation (summary,
responses, request body) where it is defined; this module holds the shared
schemas (``components``) and adds what every operation has in common: the
``{id}`` parameter, and the error answers (404 unknown application, 400/413
for a bad body, 405 wrong method, 500).
"""

from __future__ import annotations

from typing import Any

from ..config import ID_PATTERN
from .api import PREFIX, Route

_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"], "minimum": 0}
_NULLABLE_STRING = {"type": ["string", "null"]}
_WORKER_STATUS = {"type": "string", "enum": ["starting", "ready", "stopping", "stopped", "dead"]}
_APP_STATUS = {"type": "string", "enum": ["ready", "degraded", "unavailable"],
               "description": "ready: every worker is ready; degraded: some are; "
                              "unavailable: none is."}

_HOST_CHAR = r"[A-Za-z0-9._~%!$&'()*+,;=-]"
_INVALIDATION_KEY = (
    r"^[A-Za-z][A-Za-z0-9+.-]*://(\[[0-9A-Fa-f:.]+\]|" + _HOST_CHAR + "*"
    + _HOST_CHAR.replace(".", "") + _HOST_CHAR + "*)(:([0-9]{1,4}|[0-5][0-9]{4}|"
    r"6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?#][^\s\x00-\x1f]*)?"
    r"(?![\s\S])")
SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "pattern": "^WATT_[A-Z0-9_]+$",
                                "description": "Stable code, listed in docs/errors.md."},
                       "message": {"type": "string"}},
    },
    "Metadata": {
        "type": "object",
        "required": ["pid", "cwd", "argv", "executable", "pythonVersion", "wattVersion",
                     "state", "url", "file", "entrypoint", "uptime", "startedAt",
                     "applications", "applicationsCount", "socket"],
        "properties": {
            "pid": {"type": "integer", "minimum": 1},
            "cwd": {"type": "string", "description": "The folder the runtime was started in."},
            "argv": {"type": "array", "items": {"type": "string"}},
            "executable": {"type": "string", "description": "The Python interpreter."},
            "pythonVersion": {"type": "string", "examples": ["3.13.0"]},
            "wattVersion": {"type": "string"},
            "state": {"type": "string",
                      "enum": ["new", "starting", "running", "stopping", "stopped"]},
            "url": {**_NULLABLE_STRING, "description": "The entrypoint's URL."},
            "file": {**_NULLABLE_STRING, "description": "The config file (null for a dict)."},
            "entrypoint": {**_NULLABLE_STRING, "description": "The entrypoint application id."},
            "uptime": {"type": "number", "minimum": 0,
                       "description": "Seconds since the runtime started serving."},
            "startedAt": {**_NULLABLE_STRING, "format": "date-time"},
            "applications": {"type": "array", "items": {"type": "string"}},
            "applicationsCount": {"type": "integer", "minimum": 0},
            "socket": {**_NULLABLE_STRING, "description": "This API's unix socket."},
        },
    },
    "Worker": {
        "type": "object", "required": ["app", "worker", "kind", "status", "pid", "interpreter"],
        "properties": {
            "app": {"type": "string"},
            "worker": {"type": "integer", "minimum": 0, "description": "The worker's index."},
            "kind": {"type": "string", "enum": ["subinterpreter", "process"]},
            "status": _WORKER_STATUS,
            "pid": {**_NULLABLE_INT, "description": "The process id (the runtime's own for a "
                                                    "subinterpreter)."},
            "interpreter": {**_NULLABLE_INT, "description": "The subinterpreter id (0 in a "
                                                            "process worker)."},
        },
    },
    "Application": {
        "type": "object",
        "required": ["id", "kind", "isolation", "entrypoint", "path", "url", "status",
                     "healthy", "restarts", "startDuration", "workers"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "description": "The capability running it."},
            "isolation": {"type": "string", "enum": ["subinterpreter", "process", "auto"]},
            "entrypoint": {"type": "boolean"},
            "path": {"type": "string"},
            "url": {**_NULLABLE_STRING, "description": "The entrypoint URL for the entrypoint, "
                                                       "http://<id>.plt.local for the others."},
            "status": _APP_STATUS,
            "healthy": {"type": "boolean", "description": "Every worker is ready and healthy "
                                                         "(see /applications/{id}/health)."},
            "restarts": {"type": "integer", "minimum": 0},
            "startDuration": {**_NULLABLE_NUMBER,
                              "description": "Seconds its workers took to start."},
            "workers": {"type": "array", "items": {"$ref": "#/components/schemas/Worker"}},
        },
    },
    "WorkerHealth": {
        "type": "object",
        "required": ["worker", "kind", "status", "pid", "interpreter", "healthy", "reason",
                     "elu", "memory", "lastReportAge", "unhealthyChecks", "restarts", "uptime"],
        "properties": {
            "worker": {"type": "integer", "minimum": 0},
            "kind": {"type": "string", "enum": ["subinterpreter", "process"]},
            "status": _WORKER_STATUS,
            "pid": _NULLABLE_INT,
            "interpreter": _NULLABLE_INT,
            "healthy": {"type": "boolean"},
            "reason": {**_NULLABLE_STRING, "description": "Why it is not healthy."},
            "elu": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                    "description": "Event-loop utilization at the last report."},
            "memory": {**_NULLABLE_INT, "description": "Resident bytes (process workers)."},
            "lastReportAge": {**_NULLABLE_NUMBER,
                              "description": "Seconds since the worker's last health report."},
            "unhealthyChecks": {"type": "integer", "minimum": 0,
                                "description": "Unhealthy checks in a row."},
            "restarts": {"type": "integer", "minimum": 0,
                         "description": "Times this worker slot was replaced."},
            "uptime": {**_NULLABLE_NUMBER, "description": "Seconds since it became ready."},
        },
    },
    "Health": {
        "type": "object",
        "required": ["id", "status", "healthy", "restarts", "checks", "workers"],
        "properties": {
            "id": {"type": "string"},
            "status": _APP_STATUS,
            "healthy": {"type": "boolean", "description": "Every worker is ready and healthy."},
            "restarts": {"type": "integer", "minimum": 0},
            "checks": {
                "type": "object", "description": "The `health` config in force.",
                "required": ["enabled", "interval", "gracePeriod", "maxELU", "maxMemory",
                             "maxUnhealthyChecks"],
                "properties": {"enabled": {"type": "boolean"},
                               "interval": {"type": "integer"},
                               "gracePeriod": {"type": "integer"},
                               "maxELU": {"type": "number"},
                               "maxMemory": {"type": "integer"},
                               "maxUnhealthyChecks": {"type": "integer"}},
            },
            "workers": {"type": "array",
                        "items": {"$ref": "#/components/schemas/WorkerHealth"}},
        },
    },
    "Environment": {
        "type": "object", "required": ["id", "worker", "env", "masked", "config"],
        "properties": {
            "id": {"type": "string"},
            "worker": {**_NULLABLE_INT, "description": "The worker whose environment it is."},
            "env": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "Name to value; secrets masked as ****."},
            "masked": {"type": "array", "items": {"type": "string"},
                       "description": "Names whose value is masked (or has its URL password "
                                      "masked)."},
            "config": {"type": "array", "items": {"type": "string"},
                       "description": "Names set by the application's `env` config."},
        },
    },
    "InjectRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "method": {"type": "string", "pattern": "^[A-Za-z]{1,20}$", "default": "GET"},
            "path": {"type": "string", "pattern": "^/[!-~]*$", "default": "/",
                     "description": "Path and query, printable ASCII (percent-encode the "
                                    "rest)."},
            "headers": {
                "description": "An object, or a list of [name, value] to repeat a name.",
                "oneOf": [
                    {"type": "object",
                     "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
                     "additionalProperties": {"type": "string", "pattern": "^[\\t -~]*$"}},
                    {"type": "array", "items": {
                        "type": "array", "minItems": 2, "maxItems": 2,
                        "prefixItems": [{"type": "string",
                                         "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
                                        {"type": "string", "pattern": "^[\\t -~]*$"}]}},
                ],
            },
            "body": {"type": "string", "default": ""},
            "base64": {"type": "boolean", "default": False,
                       "description": "`body` is base64 (binary content)."},
        },
        # With base64: true, the body must be valid (padded) base64.
        "if": {"required": ["base64"], "properties": {"base64": {"const": True}}},
        "then": {"properties": {"body": {
            "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"}}},
    },
    "InjectResponse": {
        "type": "object", "required": ["status", "headers", "body", "base64"],
        "properties": {
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "headers": {"type": "array", "items": {
                "type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string"}}},
            "body": {"type": "string"},
            "base64": {"type": "boolean",
                       "description": "true when the body was not UTF-8 and is base64."},
        },
    },
    "CacheInvalidation": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "keys": {"type": "array",
                     # What a request can have (watt.cache.invalidation_key refuses the
                     # rest, 400): a host of one character other than a dot at least (or
                     # [IPv6]), a port up to 65535, no space or control character.
                     # (?![\s\S]) ends it: a `$` would let a last newline through.
                     "items": {"type": "string", "pattern": _INVALIDATION_KEY},
                     "description": "Full URLs whose GET and HEAD responses are dropped."},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1},
                     "description": "Responses tagged with any of these are dropped."},
        },
    },
    "CacheInvalidated": {
        "type": "object", "required": ["dropped"],
        "properties": {"dropped": {"type": "integer", "minimum": 0}},
    },
    "Stopping": {
        "type": "object", "required": ["pid", "stopping", "timeout"],
        "properties": {"pid": {"type": "integer"}, "stopping": {"const": True},
                       "timeout": {"type": "number", "minimum": 0,
                                   "description": "gracefulShutdown.runtime, in seconds."}},
    },
}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(description: str, schema: dict | str) -> dict:
    """An OpenAPI response object with a JSON body (``schema``: a name in SCHEMAS or
    a schema)."""
    return {"description": description,
            "content": {"application/json": {"schema": ref(schema) if isinstance(schema, str)
                                             else schema}}}


def json_body(schema: dict | str, description: str = "", required: bool = False) -> dict:
    body: dict[str, Any] = {"required": required, "content": {
        "application/json": {"schema": ref(schema) if isinstance(schema, str) else schema}}}
    if description:
        body["description"] = description
    return body


def _error(description: str) -> dict:
    return json_response(description, "Error")


def document(routes: list[Route], *, version: str, app_ids: list[str] = ()) -> dict:
    """The OpenAPI document for ``routes``; ``app_ids`` (this runtime's) become the
    examples of the ``{id}`` parameter."""
    paths: dict[str, dict] = {}
    for route in routes:
        operation = dict(route.operation)
        responses = dict(operation["responses"])
        parameters = list(operation.get("parameters", []))
        if "{id}" in route.path:
            id_schema: dict[str, Any] = {"type": "string", "pattern": ID_PATTERN}
            if app_ids:
                id_schema["examples"] = list(app_ids)
            parameters.insert(0, {"name": "id", "in": "path", "required": True,
                                  "description": "An application id.", "schema": id_schema})
            responses.setdefault(404, _error("No application with this id "
                                             "(`WATT_MANAGEMENT_UNKNOWN_APP`)."))
        if "requestBody" in operation:
            responses.setdefault(400, _error("The body is not the JSON expected "
                                             "(`WATT_MANAGEMENT_BAD_REQUEST`)."))
            responses.setdefault(413, _error("The body is larger than 16 MiB."))
        responses.setdefault(405, _error("Another method is expected (`Allow` says which)."))
        responses.setdefault(500, _error("The operation failed (the runtime's log has more)."))
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = {str(status): answer
                                  for status, answer in sorted(responses.items())}
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Watt management API", "version": version,
                 "description": "Served by every Watt runtime on a unix socket only its user "
                                "can reach (docs/cli.md). Every error is JSON "
                                "{\"code\", \"message\"}."},
        "servers": [{"url": "http://watt", "description": "over the runtime's unix socket"}],
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
