"""The configuration: msgspec Structs, loading, placeholders, autoload, schema.

Loading is pure apart from reading the config file and the ``.env`` beside
it (and listing the ``autoload`` folder), so every rule is tested without
starting anything. Every problem is a :class:`ConfigError` whose ``key`` is
the dotted key path (``applications[1].workers``) and whose ``line`` points
into the file, because a config error the user cannot locate is a lost hour.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from dotenv import dotenv_values

from watt.config_auth import AuthConfig, OpenApiSetting, ValidationSetting
from watt.config_cache import HttpCacheConfig
from watt.config_capabilities import CommandListen, GatewayConfig
from watt.config_checks import check_config
from watt.config_dashboard import DashboardConfig
from watt.config_deploy import DeployConfig
from watt.config_edge import AppCors, EdgeServerConfig
from watt.config_env import apply_overlay
from watt.config_files import find_file, join_path, read_file
from watt.config_outbound import Interceptors
from watt.config_telemetry import (
    AppLoggerConfig,
    LoggerConfig,
    ManagementApiConfig,
    MetricsConfig,
    TelemetryConfig,
)
from watt.config_transports import transport_paths
from watt.config_workers import APP_PATTERN, AppHealthConfig, WorkersConfig
from watt.errors import ConfigError

SCHEMA_ID = "urn:watt:config"
ID_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\{(PLT_[A-Za-z0-9_]+)\}")


def _doc(description: str, **constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    """Base of the schema Structs: unknown keys are errors, keys are camelCase."""


class ServerConfig(EdgeServerConfig):
    """The public HTTP server that serves the entrypoint application."""

    hostname: Annotated[str, _doc("Address to bind.")] = "127.0.0.1"
    port: Annotated[int, _doc("TCP port; 0 picks any free port.", ge=0, le=65535)] = 3042
    engine: Annotated[
        Literal["auto", "watt", "granian", "hypercorn"],
        _doc("HTTP engine of the entrypoint server; `auto` lets Watt choose."),
    ] = "auto"
    direct: Annotated[bool, _doc(
        "watt engine: the entrypoint application's subinterpreter workers serve the "
        "connections the main interpreter accepts, with no hop per request; Watt falls back "
        "to forwarding (and logs why) when TLS, rate limiting, auth, validation, "
        "per-application CORS, limits.maxConcurrency or httpCache for the entrypoint needs "
        "the main interpreter per request.")] = True


class ApplicationConfig(_Section):
    """One application, run by its own workers."""

    id: Annotated[str, _doc("Unique lowercase hostname label: the application is reached at "
                            "http://<id>.plt.local.", pattern=ID_PATTERN)]
    path: Annotated[str, _doc("The application's folder, relative to the config file.")]
    app: Annotated[
        Annotated[str, msgspec.Meta(pattern=APP_PATTERN)] | None,
        _doc("The callable as 'module:attr' or 'module:factory()'; found by the capability "
             "when absent."),
    ] = None
    kind: Annotated[str | None, _doc("Capability name (asgi, django, ...); else detected.")] = None
    workers: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | WorkersConfig | None,
        _doc("Number of workers, or {min, max} to scale on event-loop utilization (default: "
             "the top-level `workers`, else 1)."),
    ] = None
    isolation: Annotated[
        Literal["auto", "subinterpreter", "process"],
        _doc("Where workers run; `auto` picks a process when the application cannot load in a "
             "subinterpreter."),
    ] = "auto"
    env: Annotated[dict[str, str], _doc("Environment variables for the workers.")] = {}
    threads: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | None,
        _doc("wsgi/flask/django (WSGI): threads that run the application's synchronous code "
             "in each worker (default 10)."),
    ] = None
    command: Annotated[
        list[str] | str | None,
        _doc("command: the program to run, with PORT in its environment (a string is split "
             "like a shell would, without a shell); default: `command` in watt.command.json."),
    ] = None
    index: Annotated[
        list[str] | str | None,
        _doc("static: files tried for `/` and for folders (default [\"index.html\"])."),
    ] = None
    max_age: Annotated[
        Annotated[int, msgspec.Meta(ge=0)] | None,
        _doc("static: seconds for `Cache-Control: public, max-age=N` (default: no header)."),
    ] = None
    restart_on_error: Annotated[
        bool | Annotated[int, msgspec.Meta(ge=0)] | None,
        _doc("Restart a worker that dies: true (backoff from 1000 ms), the first backoff in "
             "ms (doubling up to 30 s), or false. Default: the runtime's `restartOnError`."),
    ] = None
    logger: Annotated[AppLoggerConfig, _doc("This application's log settings.")] = \
        AppLoggerConfig()
    health: Annotated[
        AppHealthConfig, _doc("Readiness and liveness checks of the application.")] = \
        AppHealthConfig()
    gateway: Annotated[
        GatewayConfig | None,
        _doc("gateway: the routes, as in watt.gateway.json (which this replaces)."),
    ] = None
    start_timeout: Annotated[
        Annotated[float, msgspec.Meta(gt=0)] | None,
        _doc("command: seconds the program may take to listen (default 30)."),
    ] = None
    stop_timeout: Annotated[
        Annotated[float, msgspec.Meta(gt=0)] | None,
        _doc("command: seconds between SIGTERM and SIGKILL (default 10)."),
    ] = None
    listen: Annotated[
        CommandListen | None,
        _doc("command: `port` ($PORT, default) or `socket` ($SOCKET_PATH, a unix socket)."),
    ] = None
    max_concurrency: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | None,
        _doc("Requests each worker serves at once, from the entrypoint and the mesh alike; "
             "more get 503 `WATT_OVERLOADED` with Retry-After (default: no limit)."),
    ] = None
    graceful_shutdown: Annotated[
        Annotated[int, msgspec.Meta(ge=0)] | None,
        _doc("Milliseconds this application's workers may take to finish in-flight "
             "requests at shutdown (default: `gracefulShutdown.application`)."),
    ] = None
    interceptors: Annotated[
        Interceptors | None,
        msgspec.Meta(description="This application's outgoing-request hooks, after "
                     "`mesh.interceptors` (docs/outbound.md)."),
    ] = None
    cors: AppCors = None
    openapi: OpenApiSetting = True
    validation: ValidationSetting = True


class LimitsConfig(_Section):
    """What one request to the entrypoint may take; 0 turns a limit off."""

    max_body_size: Annotated[
        int, _doc("Largest request body in bytes (413 `WATT_BODY_TOO_LARGE`).", ge=0)
    ] = 100 * 1024 * 1024
    request_timeout: Annotated[
        int, _doc("Milliseconds the application has to start its response "
                  "(504 `WATT_REQUEST_TIMEOUT`).", ge=0)
    ] = 120_000
    max_concurrency: Annotated[
        int, _doc("Requests in flight to the entrypoint application at once, across its "
                  "workers (503 `WATT_OVERLOADED` with Retry-After).", ge=0)
    ] = 0
    header_timeout: Annotated[
        int, _doc("Milliseconds a client has to send the request head (slow clients).", ge=1)
    ] = 30_000
    keep_alive_timeout: Annotated[
        int, _doc("Milliseconds an idle keep-alive connection stays open.", ge=1)
    ] = 5_000
    max_header_size: Annotated[
        int, _doc("Largest request head in bytes (request line and headers).", ge=1024)
    ] = 64 * 1024
    max_header_count: Annotated[
        int, _doc("Most header fields in a request (431); the watt engine checks it, the "
                  "others bound the head by size only.", ge=1)
    ] = 100


class HealthConfig(_Section):
    """Worker health checks: an unhealthy worker is replaced (a new one is ready first)."""

    enabled: Annotated[bool, _doc("Run health checks.")] = True
    interval: Annotated[int, _doc("Milliseconds between two checks (and reports).", ge=10)] = 30_000
    grace_period: Annotated[
        int, _doc("Milliseconds after a worker is ready during which checks do not count.",
                  ge=0)] = 30_000
    max_elu: Annotated[
        float, _doc("Largest event-loop utilization (0-1) that is still healthy.", ge=0, le=1)
    ] = msgspec.field(default=0.99, name="maxELU")
    max_memory: Annotated[
        int, _doc("Largest resident memory of a process worker in bytes (0: no limit); "
                  "a subinterpreter's own memory cannot be measured apart.", ge=0)
    ] = 4 * 1024 ** 3
    max_unhealthy_checks: Annotated[
        int, _doc("Unhealthy checks in a row before the worker is replaced.", ge=1)] = 10


class GracefulShutdownConfig(_Section):
    """How long shutdown waits for in-flight requests before it stops them."""

    runtime: Annotated[int, _doc("Milliseconds the whole shutdown may take.", ge=0)] = 30000
    application: Annotated[
        int, _doc("Milliseconds each application's workers may take to finish in-flight "
                  "requests and run lifespan shutdown.", ge=0)] = 10000


class AutoloadConfig(_Section):
    """Every sub-folder of `path` becomes an application whose id is the folder name."""

    path: Annotated[str, _doc("Folder of applications, relative to the config file.")]
    exclude: Annotated[list[str], _doc("Sub-folder names that are not applications.")] = []


class MeshConfig(_Section):
    """Calls between applications at http://<id>.plt.local."""

    timeout: Annotated[
        float,
        _doc("Seconds a mesh call waits for the response to start and for each body chunk, "
             "when the client sets no timeout of its own.", gt=0),
    ] = 30.0
    interceptors: Interceptors = []


class Config(_Section):
    """Watt configuration (watt.json or watt.toml)."""

    schema: Annotated[str | None, _doc("JSON schema of this file, for editors.")] = msgspec.field(
        default=None, name="$schema"
    )
    entrypoint: Annotated[
        str | None, _doc("Id of the application served by `server`; optional with one.")
    ] = None
    server: Annotated[ServerConfig, _doc("The public HTTP server.")] = ServerConfig()
    applications: Annotated[list[ApplicationConfig], _doc("The applications.")] = []
    mesh: Annotated[MeshConfig, _doc("Calls between applications.")] = MeshConfig()
    workers: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | WorkersConfig,
        _doc("Workers of each application that does not set its own: a number, or {min, "
             "max}.")] = 1
    restart_on_error: Annotated[
        bool | Annotated[int, msgspec.Meta(ge=0)],
        _doc("Restart workers that die: true (backoff from 1000 ms), the first backoff in ms "
             "(doubling up to 30 s), or false."),
    ] = True
    graceful_shutdown: Annotated[
        GracefulShutdownConfig, _doc("Time limits of a graceful shutdown.")
    ] = GracefulShutdownConfig()
    limits: Annotated[LimitsConfig, _doc("Limits on requests to the entrypoint.")] = LimitsConfig()
    health: Annotated[HealthConfig, _doc("Worker health checks.")] = HealthConfig()
    metrics: Annotated[
        MetricsConfig, _doc("The runtime's own HTTP server: /metrics, /ready and /live.")
    ] = MetricsConfig()
    logger: Annotated[LoggerConfig, _doc("Logs of the runtime and its applications.")] = \
        LoggerConfig()
    telemetry: Annotated[
        TelemetryConfig | None, _doc("Tracing (OpenTelemetry): off unless set.")] = None
    management_api: Annotated[
        bool | ManagementApiConfig,
        _doc("Serve the management API on a local socket only this user can reach "
             "(used by `watt ps`, `watt applications`, `watt inject`, ...); an object "
             "serves it over TCP too, with a bearer token.")
    ] = True
    dashboard: Annotated[
        bool | DashboardConfig,
        _doc("Start the admin dashboard (docs/dashboard.md) with the runtime and print its "
             "URL: `true` for 127.0.0.1 and a free port, or `{hostname, port, sampleRatio}`.")
    ] = False
    autoload: Annotated[
        AutoloadConfig | None, _doc("Load every sub-folder of a folder as an application.")
    ] = None
    http_cache: Annotated[
        HttpCacheConfig | None, _doc("HTTP cache of mesh calls and entrypoint responses "
                                     "(docs/cache.md): off unless set.")] = None
    auth: Annotated[AuthConfig | None, _doc("Bearer-token authentication at the entrypoint, "
                                            "per path prefix (docs/auth.md).")] = None
    deploy: Annotated[
        DeployConfig, _doc("Container and Kubernetes settings (`watt build --container`, "
                           "`--k8s`) and the drain after SIGTERM.")] = DeployConfig()


class LoadedConfig(msgspec.Struct):
    """A validated configuration, resolved for the runtime (not part of the schema)."""

    file: str | None
    base_dir: str
    entrypoint: str
    server: ServerConfig
    applications: list[ApplicationConfig]
    config: Config
    mesh: MeshConfig = MeshConfig()
    restart_on_error: bool | int = True
    graceful_shutdown: GracefulShutdownConfig = GracefulShutdownConfig()
    limits: LimitsConfig = LimitsConfig()
    management_api: bool | ManagementApiConfig = True
    health: HealthConfig = HealthConfig()
    metrics: MetricsConfig = MetricsConfig()
    logger: LoggerConfig = LoggerConfig()
    telemetry: TelemetryConfig | None = None


class _Source:
    """Where the raw config came from: builds errors that carry its file and line."""

    def __init__(self, file: str | None = None, lines: dict[str, int] | None = None) -> None:
        self.file, self.lines = file, lines or {}

    def error(self, code: str, key: str | None, message: str) -> ConfigError:
        line, probe = None, key or ""
        while probe and line is None:  # the key's own line, else its nearest parent's
            line = self.lines.get(probe)
            probe = probe[: max(probe.rfind("."), probe.rfind("["), 0)]
        return ConfigError(message, code=code, file=self.file, line=line, key=key)


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | Config,
    *,
    env: Mapping[str, str] | None = None,
    environment: str | None = None,
) -> LoadedConfig:
    """Load, substitute placeholders, validate and resolve a configuration.

    ``source`` is a ``watt.json``/``watt.toml`` path, a folder holding one, a
    dict or a :class:`Config`. ``env`` defaults to ``os.environ``; for a file,
    a ``.env`` beside it supplies variables the environment does not set.
    For a file, the overlay of ``environment`` (default: ``WATT_ENV``) is merged
    in first (:mod:`watt.config_env`).
    """
    environ = dict(os.environ if env is None else env)
    if isinstance(source, (Config, Mapping)):
        raw = msgspec.to_builtins(source) if isinstance(source, Config) else dict(source)
        src, base_dir = _Source(), os.getcwd()
    elif isinstance(source, (str, os.PathLike)):
        file = find_file(Path(source))
        raw, lines = read_file(file)
        src, base_dir = _Source(file, lines), os.path.dirname(file)
        if os.path.isfile(dotenv_file := os.path.join(base_dir, ".env")):
            values = dotenv_values(dotenv_file)
            environ = {**{k: v for k, v in values.items() if v is not None}, **environ}
        raw, src = apply_overlay(raw, src, environment, environ, read_file, _Source)
    else:
        raise TypeError(f"load_config() takes a path, a dict or a Config, not {type(source)!r}")
    config = _decode(_substitute(raw, "", environ, src), src)
    return _resolve(config, base_dir, src)


def _substitute(value: Any, path: str, environ: Mapping[str, str], src: _Source) -> Any:
    """Replace ``${X}``/``{PLT_X}`` in every string, before types are checked."""
    if isinstance(value, dict):
        return {k: _substitute(v, join_path(path, k), environ, src) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", environ, src) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if (name := match[1] or match[2]) not in environ:
            raise src.error("WATT_CONFIG_MISSING_ENV", path, f"`{path}`: environment variable "
                            f"{name} is not set (placeholder {match[0]}); set it or add it to "
                            "a .env file beside the config file")
        return environ[name]

    return _PLACEHOLDER.sub(replace, value)


def _decode(raw: Any, src: _Source) -> Config:
    try:
        return msgspec.convert(raw, Config, strict=False)  # "3042" from a placeholder -> 3042
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc), raw, src) from None


_HINTS = {
    "id": "an id is a lowercase hostname label (a-z, 0-9, '-' inside), since the "
    "application is reached at http://<id>.plt.local",
    "app": "write 'module:attr' or 'module:factory()'",
    "ready": "write 'module:function'",
    "live": "write 'module:function'",
}


def _validation_error(text: str, raw: Any, src: _Source) -> ConfigError:
    """Turn msgspec's message into a code and a key path (``$.a[0].b`` -> ``a[0].b``)."""
    what, _, where = text.partition(" - at `")
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    if path.endswith("[...]"):  # a value in a dict of strings: name its key
        path = path.removesuffix("[...]")
        mapping = _value_at(raw, path)
        items = mapping.items() if isinstance(mapping, dict) else ()
        bad = [k for k, v in items if not isinstance(v, str)]
        path = join_path(path, bad[0]) if bad else path
    if unknown := re.fullmatch(r"Object contains unknown field `(.*)`", what):
        key, known = join_path(path, unknown[1]), _known_keys(path)
        close = difflib.get_close_matches(unknown[1], known, n=1)
        return src.error("WATT_CONFIG_UNKNOWN_KEY", key, f"unknown key `{key}`"
                         + (f"; did you mean `{close[0]}`?" if close else "")
                         + (f" (valid keys here: {', '.join(known)})" if known else ""))
    if missing := re.fullmatch(r"Object missing required field `(.*)`", what):
        key = join_path(path, missing[1])
        return src.error("WATT_CONFIG_MISSING_KEY", key, f"missing required key `{key}`")
    if not path:
        return src.error("WATT_CONFIG_INVALID_TYPE", None, f"the configuration must be an "
                         f"object: {what}")
    value, hint = _value_at(raw, path), _HINTS.get(re.split(r"[.\]]", path)[-1])
    got = f", got {value!r}" if "got" not in what and value is not _ABSENT else ""
    if hint and "regex" in what:  # the hint says it better than the pattern
        what, got = f"{value!r} is not valid", ""
    hint = f"; {hint}" if hint else ""
    return src.error("WATT_CONFIG_INVALID_TYPE", path, f"`{path}`: {what}{got}{hint}")


_ABSENT = object()


def _parts(path: str) -> list[str | int]:
    return [int(i) if i else k for i, k in re.findall(r"\[(\d+)\]|([^.\[]+)", path)]


def _value_at(raw: Any, path: str) -> Any:
    for part in _parts(path):
        in_list = isinstance(part, int) and isinstance(raw, list) and part < len(raw)
        if in_list or (isinstance(part, str) and isinstance(raw, dict) and part in raw):
            raw = raw[part]
        else:
            return _ABSENT
    return raw


def _known_keys(path: str) -> list[str]:
    """The keys the schema allows at ``path``, for "did you mean"."""
    info = msgspec.inspect

    def unwrap(t: Any) -> Any:
        while isinstance(t, (info.Metadata, info.UnionType)):
            is_meta = isinstance(t, info.Metadata)
            t = t.type if is_meta else next(  # a Struct in a union (workers: int | {..})
                (x for x in t.types if isinstance(x, info.StructType)),
                next(x for x in t.types if not isinstance(x, info.NoneType)))
        return t

    t: Any = info.type_info(Config)
    for part in _parts(path):
        t = unwrap(t)
        if isinstance(part, int) and isinstance(t, info.ListType):
            t = t.item_type
        elif isinstance(part, str) and isinstance(t, info.StructType):
            t = next((f.type for f in t.fields if f.encode_name == part), None)
        else:
            return []
    t = unwrap(t)
    return [f.encode_name for f in t.fields] if isinstance(t, info.StructType) else []


def _resolve(config: Config, base_dir: str, src: _Source) -> LoadedConfig:
    """Absolute paths, autoload, unique ids, one entrypoint: what the runtime relies on."""
    seen: dict[str, int] = {}
    apps: list[ApplicationConfig] = []
    for i, app in enumerate(config.applications):
        if app.id in seen:
            raise src.error("WATT_CONFIG_DUPLICATE_ID", f"applications[{i}].id",
                            f"`applications[{i}].id`: id {app.id!r} is already used by "
                            f"applications[{seen[app.id]}]; ids must be unique")
        seen[app.id] = i
        path = _folder(base_dir, app.path, f"applications[{i}].path", src)
        apps.append(msgspec.structs.replace(app, path=path))
    if config.autoload is not None:  # an explicit application overrides an autoloaded one
        apps += [a for a in _autoload(config.autoload, base_dir, src) if a.id not in seen]
    # Each application's worker count, the top-level `workers` where it sets none.
    apps = [a if a.workers is not None else msgspec.structs.replace(a, workers=config.workers)
            for a in apps]
    for key, workers in [("workers", config.workers)] + [
            (f"applications[{i}].workers", a.workers) for i, a in enumerate(config.applications)]:
        if isinstance(workers, WorkersConfig) and workers.minimum > workers.maximum:
            raise src.error("WATT_CONFIG_INVALID", key, f"`{key}`: min ({workers.minimum}) is "
                            f"larger than max ({workers.maximum})")
    if not apps:
        raise src.error("WATT_CONFIG_INVALID", "applications", "at least one application is "
                        "needed: list one in `applications` or set `autoload.path`")
    ids, entrypoint = [a.id for a in apps], config.entrypoint
    if entrypoint is None and len(apps) > 1:
        raise src.error("WATT_CONFIG_ENTRYPOINT", "entrypoint", "`entrypoint` is required with "
                        f"several applications ({', '.join(ids)}): set it to the id of the one "
                        "that serves HTTP")
    if entrypoint is not None and entrypoint not in ids:
        close = difflib.get_close_matches(entrypoint, ids, n=1)
        raise src.error("WATT_CONFIG_ENTRYPOINT", "entrypoint", f"`entrypoint` names "
                        f"{entrypoint!r}, which is no application"
                        + (f"; did you mean {close[0]!r}?" if close else "")
                        + f" (known ids: {', '.join(ids)})")
    check_config(config, apps, base_dir, src)
    return LoadedConfig(file=src.file, base_dir=base_dir, entrypoint=entrypoint or ids[0],
                        server=config.server, applications=apps, config=config,
                        mesh=config.mesh, restart_on_error=config.restart_on_error,
                        graceful_shutdown=config.graceful_shutdown, limits=config.limits,
                        management_api=config.management_api, health=config.health,
                        metrics=config.metrics, logger=_logger_paths(config.logger, base_dir),
                        telemetry=_telemetry_paths(config.telemetry, base_dir))


def _logger_paths(logger: LoggerConfig, base_dir: str) -> LoggerConfig:
    if logger.transports:
        logger = msgspec.structs.replace(
            logger, transports=transport_paths(logger.transports, base_dir))
    if logger.file is None:
        return logger
    path = os.path.normpath(os.path.join(base_dir, logger.file.path))
    return msgspec.structs.replace(logger, file=msgspec.structs.replace(logger.file, path=path))


def _telemetry_paths(telemetry: TelemetryConfig | None, base_dir: str) -> TelemetryConfig | None:
    if telemetry is None:
        return None
    exporters = []
    for exporter in telemetry.exporters():
        if exporter.options.path:
            path = os.path.normpath(os.path.join(base_dir, exporter.options.path))
            exporter = msgspec.structs.replace(
                exporter, options=msgspec.structs.replace(exporter.options, path=path))
        exporters.append(exporter)
    return msgspec.structs.replace(telemetry, exporter=exporters)


def _folder(base_dir: str, path: str, key: str, src: _Source) -> str:
    full = os.path.normpath(os.path.join(base_dir, path))
    if not os.path.isdir(full):
        raise src.error("WATT_CONFIG_PATH_NOT_FOUND", key,
                        f"`{key}`: folder {path!r} does not exist (looked for {full})")
    return full


def _autoload(autoload: AutoloadConfig, base_dir: str, src: _Source) -> list[ApplicationConfig]:
    root, names = _folder(base_dir, autoload.path, "autoload.path", src), {}
    apps: list[ApplicationConfig] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        name, app_id = entry.name, entry.name.lower()
        if not entry.is_dir() or name.startswith((".", "_")) or name in autoload.exclude:
            continue
        if not re.match(ID_PATTERN, app_id):
            raise src.error("WATT_CONFIG_INVALID", "autoload.path", f"`autoload.path`: folder "
                            f"{name!r} does not give a valid application id (lowercase letters, "
                            "digits, '-' inside); rename it or add it to `autoload.exclude`")
        if app_id in names:
            raise src.error("WATT_CONFIG_DUPLICATE_ID", "autoload.path", f"`autoload.path`: "
                            f"folders {names[app_id]!r} and {name!r} both give the id {app_id!r}")
        names[app_id] = name
        apps.append(ApplicationConfig(id=app_id, path=os.path.join(root, name)))
    return apps


def generate_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Config`, written to ``config.schema.json``."""
    defs = msgspec.json.schema(Config)["$defs"]
    root = defs.pop("Config")  # inline the root so editors see its properties directly
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **root, "title": "Watt configuration", "$defs": defs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m watt.config")
    parser.add_argument("--schema", action="store_true", help="print the JSON schema")
    if not parser.parse_args(argv).schema:
        parser.print_help()
        return 2
    sys.stdout.write(json.dumps(generate_schema(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
