"""Rules across keys of today's sections that msgspec cannot express.

Run by :func:`watt.config.load_config` once the config is decoded and its
applications resolved, so ``watt config`` finds these mistakes too, not only
``watt start``, and every error names the key path and the file's line: an
origin no browser sends, a ``publicPaths`` entry that can never match, an id
``httpCache.applications`` does not know, a syslog address or a rotation Watt
cannot use, numbers that contradict each other.  Only what the config says: no
file it names is opened (a TLS, OpenAPI or key file may exist only where Watt is
deployed, and ``watt build`` loads the config on the build machine), no import
of an application, no network.  What is found at start instead gets its line
from :func:`locate`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from pathlib import Path

from watt.config_auth import check_auth
from watt.config_transports import FileTransport, SyslogTransport, rotation_error, syslog_error
from watt.errors import ConfigError

#: What a browser sends in ``Origin``: scheme://host[:port], no path, no slash at the end.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$", re.IGNORECASE)


def check_config(config, apps: list, base_dir: str, src) -> None:
    """Raise the first problem as a :class:`ConfigError` with key path and line."""
    for rule in (_edge, _auth, _cache, _logger, _numbers):
        for code, key, message in rule(config, apps, base_dir):
            raise src.error(code, key, f"`{key}`: {message}")


def _edge(config, apps, base_dir):
    server = config.server
    for i, entry in enumerate(server.trusted_proxies):
        if entry != "*" and not _network(entry):
            yield ("WATT_CONFIG_INVALID", f"server.trustedProxies[{i}]",
                   f"{entry!r} is not an IP address, a CIDR network or '*'")
    corses = [("server.cors", server.cors)] + [
        (f"applications[{i}].cors", app.cors) for i, app in enumerate(config.applications)]
    for key, cors in corses:
        if cors is None or isinstance(cors, bool):
            continue
        origins = [cors.origin] if isinstance(cors.origin, str) else cors.origin
        for j, origin in enumerate(origins):
            if origin not in ("*", "null") and not _ORIGIN.match(origin):
                where = f"{key}.origin" if isinstance(cors.origin, str) else f"{key}.origin[{j}]"
                yield ("WATT_CONFIG_INVALID", where, f"{origin!r} is not an origin: write "
                       "scheme://host[:port] without a path or a final '/' (as browsers send "
                       "it, e.g. https://example.com), or '*'")


def _network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _auth(config, apps, base_dir):
    auth = config.auth
    if auth is None:
        return
    try:
        check_auth(auth)
    except ConfigError as exc:
        yield exc.code, exc.key, exc.message
    paths = [("auth.publicPaths", auth.public_paths)] + [
        (f"auth.routes[{i}].publicPaths", r.public_paths) for i, r in enumerate(auth.routes)]
    for key, entries in paths:
        for j, path in enumerate(entries):
            if not path.startswith("/"):
                yield ("WATT_CONFIG_INVALID", f"{key}[{j}]", f"{path!r} can never match a "
                       "request path: start it with '/' (exact, or ending in '/*')")


def _cache(config, apps, base_dir):
    cache = config.http_cache
    if cache is None or cache.applications is None:
        return
    ids = [app.id for app in apps]
    for i, app_id in enumerate(cache.applications):
        if app_id not in ids:
            close = difflib.get_close_matches(app_id, ids, n=1)
            yield ("WATT_CONFIG_INVALID", f"httpCache.applications[{i}]",
                   f"{app_id!r} is no application" + (f"; did you mean {close[0]!r}?"
                                                      if close else "")
                   + f" (known ids: {', '.join(ids)})")


def _logger(config, apps, base_dir):
    logger = config.logger
    if logger.file is not None and (message := rotation_error(logger.file.rotation)):
        yield "WATT_CONFIG_INVALID", "logger.file.rotation", message
    for i, transport in enumerate(logger.transports or ()):
        key = f"logger.transports[{i}]"
        if isinstance(transport, FileTransport) and (
                message := rotation_error(transport.rotation)):
            yield "WATT_CONFIG_INVALID", f"{key}.rotation", message
        if isinstance(transport, SyslogTransport) and (
                message := syslog_error(transport.address)):
            yield "WATT_CONFIG_INVALID", f"{key}.address", message


def _numbers(config, apps, base_dir):
    telemetry = config.telemetry
    batch = getattr(telemetry, "batch", None)
    if batch is not None and batch.max_export_batch_size > batch.max_queue_size:
        yield ("WATT_CONFIG_INVALID", "telemetry.batch.maxExportBatchSize",
               f"{batch.max_export_batch_size} is larger than `maxQueueSize` "
               f"({batch.max_queue_size}): a batch is taken from the queue")
    deploy = config.deploy
    if deploy.max_replicas < deploy.replicas:
        yield ("WATT_CONFIG_INVALID", "deploy.maxReplicas",
               f"{deploy.max_replicas} is fewer than `replicas` ({deploy.replicas})")
    resources = deploy.resources
    for name, request, limit in (("cpu", resources.cpu, resources.cpu_limit),
                                 ("memory", resources.memory, resources.memory_limit)):
        if limit is not None and _quantity(limit) < _quantity(request):
            yield ("WATT_CONFIG_INVALID", f"deploy.resources.{name}Limit",
                   f"{limit} is less than the {name} requested ({request}): Kubernetes "
                   "refuses such a Deployment")


_UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2 ** 10, "Mi": 2 ** 20,
          "Gi": 2 ** 30, "Ti": 2 ** 40}


def _quantity(text: str) -> float:
    """A Kubernetes quantity (``500m``, ``1.5``, ``512Mi``) as a number."""
    number = text.rstrip("kKMGTmi")
    return float(number) * _UNITS.get(text[len(number):], 1)


def locate(error, source) -> None:
    """Give a config error found only at start (a log transport that cannot be loaded,
    a PEM file that is not a key) the config file, and the line of its key, as the
    errors of :func:`watt.config.load_config` have them.  Best effort: unchanged for a
    dict source, an error that is not about a key, or a file that cannot be read."""
    from watt.config_env import ENV_VARIABLE
    from watt.config_files import find_file, read_file

    if getattr(error, "key", None) is None or not isinstance(source, (str, os.PathLike)):
        return
    try:
        file = find_file(Path(source))
        lines = read_file(file)[1]
    except (ConfigError, OSError):
        return
    if error.file not in (None, file):
        return
    error.file = file
    if error.line is None and not os.environ.get(ENV_VARIABLE):  # an overlay's lines differ
        from watt.config import _Source  # the key's own line, else its nearest parent's

        error.line = _Source(file, lines).error(error.code, error.key, "").line
