"""The endpoints of the management API (``/api/v1/...``), one function each.

Adding one: a function ``(api, request)`` decorated with :func:`~.api.route`,
giving its OpenAPI summary and responses (schemas in ``openapi.py``), and a
line in docs/cli.md; the dispatcher, the 404/405 answers and the OpenAPI
document pick it up.  Objects are built here from what the runtime, its
pools and worker handles record, never from the config alone.
"""

from __future__ import annotations

import base64
import datetime
import os
import platform
import re
import sys
import time

from .. import __version__
from ..isolation.base import READY, worker_environment
from .api import ROUTES, ManagementApp, Reply, Request, bad_request, route
from .openapi import document, json_body, json_response

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name
_FIELD_VALUE = re.compile(r"^[\t -~]*$")  # printable ASCII and tab, no CR/LF
#: Variable names whose value ``GET .../env`` never shows.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|PWD$|KEY|CREDENTIAL|AUTH|"
                         r"PRIVATE|SESSION|COOKIE|SIGNATURE|SALT|CERT|DSN", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)")
MASK = "****"


# -- objects -----------------------------------------------------------------------------
def application_object(api: ManagementApp, pool) -> dict:
    runtime = api.runtime
    entry = runtime.config is not None and runtime.config.entrypoint == pool.id
    info = pool.info()
    now = time.monotonic()
    workers = list(pool.workers)
    info.update(entrypoint=entry, path=pool.app.path,
                url=runtime.url if entry else f"http://{pool.id}.plt.local",
                status=app_status(workers),
                healthy=bool(workers) and all(worker_health(pool, w, now)["healthy"]
                                              for w in workers),
                startDuration=getattr(pool, "start_duration", None))
    return info


def app_status(workers: list) -> str:
    ready = sum(1 for w in workers if w.status == READY)
    return "ready" if workers and ready == len(workers) else "degraded" if ready else \
        "unavailable"


def worker_health(pool, worker, now: float) -> dict:
    check = worker.health
    reported = check is not None and check.last_report is not None
    ready = worker.status == READY
    reason = check.reason(now, worker.ready_at or now) if ready and check is not None else None
    if not ready:
        reason = f"the worker is {worker.status}"
    elif not pool.runtime.config.health.enabled:
        reason = None  # nothing reports: a ready worker is taken as healthy
    return {"worker": worker.index, "kind": worker.kind, "status": worker.status,
            "pid": worker.pid, "interpreter": worker.interpreter_id,
            "healthy": reason is None, "reason": reason,
            "elu": check.elu if reported else None,
            "memory": check.memory if reported and check.memory >= 0 else None,
            "lastReportAge": (now - check.last_report) if reported else None,
            "unhealthyChecks": check.unhealthy if check is not None else 0,
            "restarts": getattr(pool, "worker_restarts", {}).get(worker.index, 0),
            "uptime": (now - worker.ready_at) if worker.ready_at else None}


def mask_environment(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``env`` with secrets hidden: the value of a name that looks secret
    (:data:`SECRET_NAME`), and the password of any ``scheme://user:password@host``
    URL; also the names masked."""
    shown, masked = {}, []
    for name, value in sorted(env.items()):
        if SECRET_NAME.search(name):
            shown[name] = MASK
        else:
            shown[name] = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, value)
        if shown[name] != value:
            masked.append(name)
    return shown, masked


# -- the runtime -------------------------------------------------------------------------
@route("GET", "/metadata", summary="The runtime: process, versions, entrypoint, uptime",
       responses={200: json_response("The runtime.", "Metadata")}, tags=["runtime"])
def metadata(api: ManagementApp, request: Request) -> dict:
    info = api.runtime.info()
    uptime = info.get("uptime") or 0.0
    started = None
    if api.runtime.state in ("running", "stopping") and uptime:
        started = datetime.datetime.fromtimestamp(time.time() - uptime, datetime.UTC)
    return dict(info, argv=list(sys.argv), executable=sys.executable,
                pythonVersion=platform.python_version(), wattVersion=__version__,
                startedAt=started.isoformat() if started else None,
                applicationsCount=len(info.get("applications", [])), socket=api.socket)


@route("GET", "/openapi.json", summary="This document",
       responses={200: json_response("The OpenAPI 3.1 document of this API.", {"type": "object"})},
       tags=["runtime"], operation_id="openapi")
def openapi(api: ManagementApp, request: Request) -> dict:
    return document(api.routes, version=__version__, app_ids=sorted(api.runtime.pools))


@route("POST", "/stop", summary="Stop the runtime gracefully, as SIGTERM does",
       description="Answers first, then stops: stop taking connections, drain, lifespan "
                   "shutdown in reverse start order.",
       responses={202: json_response("The runtime is stopping.", "Stopping")},
       tags=["runtime"])
def stop(api: ManagementApp, request: Request) -> Reply:
    limit = api.runtime.config.graceful_shutdown.runtime / 1000
    return Reply({"pid": os.getpid(), "stopping": True, "timeout": limit}, 202,
                 after=api.stop_process)


# -- applications ------------------------------------------------------------------------
@route("GET", "/applications", summary="Every application, with its workers",
       responses={200: json_response("The applications, in start order.",
                                     {"type": "array",
                                      "items": {"$ref": "#/components/schemas/Application"}})},
       tags=["applications"])
def applications(api: ManagementApp, request: Request) -> list[dict]:
    return [application_object(api, pool) for pool in list(api.runtime.pools.values())]


@route("GET", "/applications/{id}", summary="One application, with its workers",
       responses={200: json_response("The application.", "Application")},
       tags=["applications"])
def application(api: ManagementApp, request: Request) -> dict:
    return application_object(api, api.pool(request.params["id"]))


@route("GET", "/applications/{id}/health",
       summary="Health of each worker: status, ELU, memory, last report, restarts",
       responses={200: json_response("The application's health.", "Health")},
       tags=["applications"])
def health(api: ManagementApp, request: Request) -> dict:
    pool = api.pool(request.params["id"])
    now = time.monotonic()
    config = api.runtime.config.health
    workers = [worker_health(pool, w, now) for w in list(pool.workers)]
    return {"id": pool.id, "status": app_status(pool.workers),
            "healthy": bool(workers) and all(w["healthy"] for w in workers),
            "restarts": pool.restarts,
            "checks": {"enabled": config.enabled, "interval": config.interval,
                       "gracePeriod": config.grace_period, "maxELU": config.max_elu,
                       "maxMemory": config.max_memory,
                       "maxUnhealthyChecks": config.max_unhealthy_checks},
            "workers": workers}


@route("GET", "/applications/{id}/env",
       summary="The environment the application's workers see, secrets masked",
       description="The runtime's environment with the application's `env` config on top, "
                   "exactly as its first worker was started with it.",
       responses={200: json_response("The environment.", "Environment")},
       tags=["applications"])
def env(api: ManagementApp, request: Request) -> dict:
    pool = api.pool(request.params["id"])
    worker = next((w for w in sorted(pool.workers, key=lambda w: w.index)
                   if w.environment is not None), None)
    environ = worker.environment if worker else worker_environment(pool.app.env)
    shown, masked = mask_environment(environ)
    return {"id": pool.id, "worker": worker.index if worker else None, "env": shown,
            "masked": masked, "config": sorted(pool.app.env)}


@route("POST", "/applications/{id}/restart",
       summary="Rolling restart: each worker is replaced by a ready new one",
       responses={200: json_response("The application after its restart.", "Application"),
                  409: json_response("The runtime is not running (stopping).", "Error")},
       tags=["applications"])
async def restart(api: ManagementApp, request: Request) -> dict:
    pool = api.pool(request.params["id"])
    await api.runtime.restart(pool.id)
    return application_object(api, api.pool(pool.id))


@route("POST", "/applications/{id}/inject",
       summary="Send one HTTP request to the application over its channel",
       description="Reaches any application, entrypoint or not, without a socket. The "
                   "answer is the application's response, whatever its status.",
       request_body=json_body("InjectRequest", "All keys optional: GET / with no body."),
       responses={200: json_response("The application's response.", "InjectResponse"),
                  409: json_response("The runtime is not running (stopping).", "Error")},
       tags=["applications"])
async def inject(api: ManagementApp, request: Request) -> dict:
    pool = api.pool(request.params["id"])
    method, path, headers, data = _inject_request(request.json(default={}))
    reply = await api.runtime.inject(pool.id, method, path, headers=headers, body=data)
    answer = {"status": reply.status,
              "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in reply.headers]}
    try:
        answer.update(body=reply.body.decode("utf-8"), base64=False)
    except UnicodeDecodeError:
        answer.update(body=base64.b64encode(reply.body).decode("ascii"), base64=True)
    return answer


@route("POST", "/cache/invalidate",
       summary="Drop HTTP cache entries by key (URL) and by tag",
       description="`keys` are full URLs (`http://<app>.plt.local/path?query`, or the "
                   "entrypoint's public URL): their GET and HEAD responses go; `tags` drop "
                   "every response that carried one of them in `httpCache.cacheTagsHeader`.",
       request_body=json_body("CacheInvalidation", required=True),
       responses={200: json_response("How many entries were dropped.", "CacheInvalidated"),
                  409: json_response("The runtime has no httpCache (`WATT_CACHE_DISABLED`).",
                                     "Error"),
                  503: json_response("The Redis store did not answer: nothing was dropped "
                                     "(`WATT_CACHE_STORE_UNAVAILABLE`).", "Error")},
       tags=["cache"])
async def cache_invalidate(api: ManagementApp, request: Request) -> Reply | dict:
    from ..cache import invalidation_key
    from ..errors import WattError

    body = request.json(default=None)
    if not isinstance(body, dict) or set(body) - {"keys", "tags"} or not all(
            isinstance(body.get(k, []), list) and all(isinstance(v, str) and v
                                                      for v in body.get(k, []))
            for k in ("keys", "tags")):
        raise bad_request('the body must be {"keys": [URL, ...], "tags": [TAG, ...]} '
                          "(non-empty strings; both optional)")
    try:
        keys = [invalidation_key(key) for key in body.get("keys", [])]
    except WattError as exc:
        raise bad_request(exc.message) from exc
    cache = api.runtime.cache
    if cache is None:
        return Reply({"code": "WATT_CACHE_DISABLED",
                      "message": "this runtime has no httpCache (or it is not enabled)"}, 409)
    try:
        return {"dropped": await cache.invalidate(keys, body.get("tags", []))}
    except WattError as exc:  # WATT_CACHE_STORE_UNAVAILABLE
        return Reply({"code": exc.code, "message": exc.message}, 503)


def _inject_request(request) -> tuple[str, str, list, bytes]:
    """Check an inject body; ``(method, path, headers, body)`` or a 400."""
    if not isinstance(request, dict):
        raise bad_request('the body must be an object {"method", "path", "headers", "body"}')
    unknown = sorted(set(request) - {"method", "path", "headers", "body", "base64"})
    if unknown:
        raise bad_request(f"unknown key(s) {', '.join(unknown)}: the body takes method, path, "
                          "headers, body and base64")
    method, path = request.get("method", "GET"), request.get("path", "/")
    headers, content = request.get("headers") or {}, request.get("body") or ""
    if not isinstance(method, str) or not re.fullmatch(r"[A-Za-z]{1,20}", method):
        raise bad_request(f"`method` must be an HTTP method name, got {method!r}")
    if not isinstance(path, str) or not re.fullmatch(r"/[!-~]*", path):
        raise bad_request(f"`path` must start with '/' and be printable ASCII "
                          f"(percent-encode the rest), got {path!r}")
    if isinstance(headers, dict):
        headers = list(headers.items())
    if not isinstance(headers, list) or not all(
            isinstance(h, list | tuple) and len(h) == 2
            and all(isinstance(x, str) for x in h) for h in headers):
        raise bad_request("`headers` must be an object of strings or a list of [name, value]")
    for name, value in headers:
        if not _TOKEN.match(name) or not _FIELD_VALUE.match(value):
            raise bad_request(f"header {name!r}: a name is a token and a value printable "
                              "ASCII without CR or LF")
    if not isinstance(content, str):
        raise bad_request("`body` must be a string (base64 with \"base64\": true)")
    encoded = request.get("base64", False)
    if not isinstance(encoded, bool):
        raise bad_request("`base64` must be true or false")
    if encoded:
        try:
            data = base64.b64decode(content, validate=True)
        except ValueError as exc:  # binascii.Error, or a str that is not ASCII
            raise bad_request(f"`body` is not valid base64: {exc}") from exc
    else:
        data = content.encode()
    return method.upper(), path, [list(h) for h in headers], data


__all__ = ["ROUTES", "application_object", "mask_environment", "worker_health"]
