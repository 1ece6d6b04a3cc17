"""Every failure Watt reports is a :class:`WattError` with a stable code.

Codes never change meaning once released; messages may improve. Only
``cli.py`` turns an error into an exit code; library code raises.
"""

from __future__ import annotations


class WattError(Exception):
    """Base class: ``code`` is stable, the message says what to do."""

    code = "WATT_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        app_id: str | None = None,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        detail: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.app_id = app_id
        self.file = file
        self.line = line
        self.key = key
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.app_id:
            where.append(f"application {self.app_id!r}")
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line else self.file)
        text = f"{self.code}: {self.message}"
        if where:
            text += f" ({', '.join(where)})"
        if self.detail:
            text += "\n" + self.detail.rstrip()
        return text


class ConfigError(WattError):
    """The configuration cannot be used as written."""

    code = "WATT_CONFIG_INVALID"


class ApplicationStartError(WattError):
    """An application failed to import or to finish its lifespan start-up."""

    code = "WATT_APP_START_FAILED"


# The catalogue, for docs/errors.md and for tests that check every code is
# documented.  Keep sorted.
CODES: dict[str, str] = {
    "WATT_APP_IMPORT_FAILED": "The application's module or attribute could not be imported.",
    "WATT_APP_LIFESPAN_FAILED": "The application's ASGI lifespan start-up reported a failure.",
    "WATT_APP_NOT_ASGI": "The application object is not an ASGI 3 callable.",
    "WATT_APP_START_FAILED": "A worker failed to start for another reason.",
    "WATT_APP_START_TIMEOUT": "A worker did not report ready within the start timeout.",
    "WATT_APP_UNHANDLED_ERROR": "The application raised before it finished its response.",
    "WATT_AUTH_INSUFFICIENT_SCOPE": (
        "A valid token lacks a scope its `auth.routes[].scopes` require (403)."
    ),
    "WATT_AUTH_INVALID_TOKEN": (
        "A bearer token is malformed, expired, not yet valid, badly signed, for another "
        "issuer or audience, or not active (401, `WWW-Authenticate: Bearer`)."
    ),
    "WATT_AUTH_MISSING_TOKEN": "A path `auth` protects was requested without a bearer token "
                               "(401).",
    "WATT_AUTH_UNAVAILABLE": (
        "The JWKS or introspection server could not be reached to check a token (503), or "
        "`auth` is configured but PyJWT is not installed (`pip install 'watt[auth]'`)."
    ),
    "WATT_BODY_TOO_LARGE": "A request body is larger than `limits.maxBodySize` (413).",
    "WATT_BUILD_LOCK_INVALID": "An application's lock or pyproject.toml cannot be read.",
    "WATT_BUILD_MISSING_DEPENDENCY": "`watt build --k8s` needs PyYAML (`watt[deploy]`).",
    "WATT_BUILD_OUT_INVALID": (
        "`watt build --out` names the project, a folder that holds no earlier build, a file, "
        "or a place that cannot be written."
    ),
    "WATT_CACHE_BAD_INVALIDATION": (
        "`watt.cache.invalidate`, `POST /api/v1/cache/invalidate` or `watt cache invalidate` "
        "got keys that are not full URLs, or tags that are not non-empty strings."
    ),
    "WATT_CACHE_DISABLED": "The runtime has no `httpCache` (or it is not enabled).",
    "WATT_CACHE_REDIS_MISSING": "`httpCache.redis` is set but the redis package is not "
                                "installed (`pip install 'watt[redis]'`).",
    "WATT_CACHE_STORE_UNAVAILABLE": (
        "The `httpCache.redis` store did not answer an invalidation: nothing was dropped "
        "(503 from `POST /api/v1/cache/invalidate`; a warning for `watt.cache.invalidate`)."
    ),
    "WATT_CACHE_UNAVAILABLE": "`watt.cache.invalidate` was called outside a Watt runtime "
                              "that has `httpCache` enabled.",
    "WATT_CAPABILITY_UNDETECTED": (
        "No capability recognises the application folder; set `kind`/`app`."
    ),
    "WATT_CAPABILITY_UNKNOWN": "`kind` names no installed capability.",
    "WATT_CIRCUIT_OPEN": (
        "An outgoing request was refused by the `watt.interceptors:CircuitBreaker` "
        "interceptor: its host failed too often in a row (raised in the application)."
    ),
    "WATT_CONFIG_DUPLICATE_ID": "Two applications share one id.",
    "WATT_CONFIG_ENTRYPOINT": "`entrypoint` names no application, or none can be chosen.",
    "WATT_CONFIG_INVALID": "The configuration is invalid for another reason.",
    "WATT_CONFIG_INVALID_TYPE": "A value has the wrong type or is out of range.",
    "WATT_CONFIG_MISSING_ENV": "A `{PLT_X}`/`${X}` placeholder names an unset variable.",
    "WATT_CONFIG_MISSING_KEY": "A required key is absent.",
    "WATT_CONFIG_NOT_FOUND": "The configuration file does not exist.",
    "WATT_CONFIG_PATH_NOT_FOUND": "An application `path` (or `autoload.path`) does not exist.",
    "WATT_CONFIG_SYNTAX": "The file is not valid JSON or TOML.",
    "WATT_CONFIG_UNKNOWN_KEY": "A key is not part of the schema (typo?).",
    "WATT_CORS_FORBIDDEN": "A CORS preflight from an origin `cors.origin` does not allow (403).",
    "WATT_CREATE_APP_EXISTS": "`watt create --add`: the project already has an application "
                              "with that id.",
    "WATT_CREATE_BAD_ID": "`watt create --add`: the id is not a valid application id "
                          "(lowercase letters, digits, `-`).",
    "WATT_CREATE_CONFIG_EDIT": "`watt create --add`: the config file could not be extended "
                               "automatically (left as it was).",
    "WATT_CREATE_NOT_EMPTY": "`watt create`: the target folder is not empty (use `--force`).",
    "WATT_CREATE_NO_CONFIG": "`watt create --add`: the folder has no watt.json or watt.toml.",
    "WATT_CREATE_UNKNOWN_KIND": "`watt create`: no template for that kind.",
    "WATT_DASHBOARD_UNAVAILABLE": (
        "`watt admin` (POST /api/v1/dashboard) could not listen on that address or port, or "
        "the dashboard already runs elsewhere (409)."
    ),
    "WATT_DEBUG_LISTEN_FAILED": "`watt dev --debug`: the debugpy adapter could not listen on "
                                "127.0.0.1:`--debug-port` (in use?).",
    "WATT_DEBUG_UNAVAILABLE": "`watt dev --debug` needs debugpy: `pip install 'watt[debug]'`.",
    "WATT_DEBUG_UNKNOWN_APP": "`watt dev --debug APP...` names an application the config "
                              "does not have.",
    "WATT_EDGE_FAILED": "An edge stage (rate limit, CORS, auth, ...) raised: a bug (500, logged).",
    "WATT_ENGINE_UNAVAILABLE": "`server.engine` names an HTTP engine that is not installed.",
    "WATT_ENTRYPOINT_BIND": "The entrypoint could not bind its host and port.",
    "WATT_ERROR": "Generic failure without a more specific code (a bug: please report it).",
    "WATT_GATEWAY_CONFIG_INVALID": (
        "`watt.gateway.json` of a gateway application is missing or invalid (the message "
        "names the file and the key)."
    ),
    "WATT_GATEWAY_NO_ROUTE": "No route of the gateway takes the request's path (404).",
    "WATT_INTERCEPTOR_FAILED": (
        "An outgoing-request interceptor raised (or returned something else than a "
        "Response); the message names it (raised in the application)."
    ),
    "WATT_INTERCEPTOR_INVALID": (
        "An interceptor of `mesh.interceptors`/`applications[].interceptors` cannot be "
        "loaded, is not an async callable, or refused its options (the worker does not start)."
    ),
    "WATT_LOG_SINK_NOT_FOUND": (
        "A `sink` log transport names a `module:callable` that cannot be imported or "
        "called, or an entry point that no installed package registers under "
        "`watt.log_transports`."),
    "WATT_MANAGEMENT_AMBIGUOUS": (
        "Several runtimes are running and a `watt` command was given no PID to choose one."
    ),
    "WATT_MANAGEMENT_BAD_REQUEST": (
        "A management API request is malformed: bad JSON, wrong method, body too large."
    ),
    "WATT_MANAGEMENT_METHOD_NOT_ALLOWED": (
        "A management API endpoint was called with another method than its own (405)."
    ),
    "WATT_MANAGEMENT_NOT_FOUND": "A management API path names no endpoint (404).",
    "WATT_MANAGEMENT_NO_RUNTIME": (
        "No runtime is running (or none with the given PID) for a `watt` command."
    ),
    "WATT_MANAGEMENT_SOCKET": "The management socket could not be created (path too long?).",
    "WATT_MANAGEMENT_STOP_TIMEOUT": (
        "`watt stop`: the runtime process was still running at the time limit."
    ),
    "WATT_MANAGEMENT_UNKNOWN_APP": (
        "A management API path or `watt` command names an application the runtime lacks (404)."
    ),
    "WATT_MANAGEMENT_UNAUTHORIZED": (
        "A management API request over TCP lacked the `managementApi.token` bearer token (401)."
    ),
    "WATT_MANAGEMENT_UNREACHABLE": (
        "A runtime's management socket exists but the runtime did not answer on it."
    ),
    "WATT_MANAGEMENT_UNSAFE_DIR": (
        "The management socket folder is not a 0700 folder owned by this user."
    ),
    "WATT_MESH_BAD_URL": (
        "A `watt.mesh` call was given a URL that is not `http://<id>.plt.local/...`."
    ),
    "WATT_MESH_PROTOCOL": (
        "A mesh call received a frame it did not expect (a bug: please report it)."
    ),
    "WATT_MESH_SYNC_IN_LOOP": "A synchronous mesh call was made on the worker's event-loop thread.",
    "WATT_MESH_TIMEOUT": "A mesh call got no response within its read timeout.",
    "WATT_MESH_UNAVAILABLE": "The mesh was used outside a Watt worker.",
    "WATT_MESH_UNKNOWN_APP": "A `<id>.plt.local` URL names no application.",
    "WATT_MESH_WORKER_DIED": "The target worker of a mesh call died after the call reached it.",
    "WATT_MESH_WS_CLOSED": "The mesh WebSocket is closed (by the other side, or before use).",
    "WATT_MESH_WS_REJECTED": (
        "The target application closed the mesh WebSocket before accepting it."
    ),
    "WATT_NO_WORKER": "The application has no worker ready (starting, stopping or dead).",
    "WATT_OPENAPI_INVALID": (
        "The OpenAPI file named by `applications[].openapi` cannot be read or used "
        "(fails the start)."
    ),
    "WATT_OVERLOADED": (
        "The entrypoint application has `limits.maxConcurrency` requests in flight, or a "
        "worker has its application's `maxConcurrency` (503, Retry-After)."
    ),
    "WATT_RATE_LIMITED": "A client emptied its `server.rateLimit` bucket (429, Retry-After).",
    "WATT_REQUEST_INVALID": (
        "The request breaks the application's OpenAPI document (400, "
        "`application/problem+json` listing each violation)."
    ),
    "WATT_REQUEST_TIMEOUT": (
        "The application did not start its response within `limits.requestTimeout` (504)."
    ),
    "WATT_RUNTIME_STATE": "The runtime was used in the wrong state (not started, stopped).",
    "WATT_TLS_INVALID": "`server.tls`: the certificate or key does not exist, cannot be "
                        "used (the message says why), or they do not match.",
    "WATT_TELEMETRY_UNAVAILABLE": (
        "`telemetry.exporter` asks for `otlp` but the OpenTelemetry SDK and OTLP exporter are "
        "not installed (`pip install 'watt[otlp]'`)."
    ),
    "WATT_SERVERLESS_EVENT": (
        "`watt.serverless`: the Lambda event is not an API Gateway (REST, HTTP API) or ALB "
        "event, a field of it has the wrong JSON type, or its base64 body is invalid."
    ),
    "WATT_STREAM_CANCELLED": "The caller of a stream went away (client disconnect).",
    "WATT_STREAM_CLOSED": "A stream was used after it was closed.",
    "WATT_SUBINTERPRETERS_UNAVAILABLE": (
        "This Python cannot create own-GIL subinterpreters (need 3.13+)."
    ),
    "WATT_WORKER_DIED": "A worker exited while requests were in flight.",
}


def markdown() -> str:
    """docs/errors.md, generated from :data:`CODES` (``python -m watt.errors``)."""
    lines = [
        "# Error codes", "",
        "Every failure Watt reports carries a stable code. Codes never change meaning;",
        "messages may improve. Where it applies, the message also names the application",
        "id, the config file and line, and the key path.", "",
        "Exit codes of `watt start`: `0` clean shutdown, `1` an application could not start",
        "(or another runtime error), `2` the configuration is invalid (`WATT_CONFIG_*`).", "",
        "HTTP status at the entrypoint when a request cannot be answered by the application:",
        "`500` `WATT_APP_UNHANDLED_ERROR`, `502` `WATT_WORKER_DIED` / `WATT_MESH_WORKER_DIED` /",
        "`WATT_MESH_UNKNOWN_APP`, `503` `WATT_NO_WORKER` / `WATT_OVERLOADED` (with",
        "`Retry-After`), `504` `WATT_MESH_TIMEOUT` / `WATT_REQUEST_TIMEOUT`, `413`",
        "`WATT_BODY_TOO_LARGE`; the body",
        'is JSON `{"error": ..., "code": ...}` and never includes the exception text (it stays',
        "in the logs).", "",
        "| code | meaning |", "| --- | --- |",
    ]
    lines += [f"| `{code}` | {text} |" for code, text in CODES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
