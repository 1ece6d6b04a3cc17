"""What a stage's factory knows about the runtime: :class:`EdgeInfo`."""

from __future__ import annotations

import os


class EdgeInfo:
    """The runtime as the edge sees it.

    ``entrypoint``: the entrypoint application's id; ``apps``: id ->
    ``ApplicationConfig``; ``tls``: whether the entrypoint serves HTTPS;
    ``base_dir``: the config file's folder; ``runtime``: the
    :class:`watt.Runtime` (None in unit tests) — e.g. for
    ``runtime.inject`` at start.  :meth:`app_for` says which application a
    path goes to."""

    def __init__(self, entrypoint: str, apps: dict, tls: bool = False, base_dir: str = ".",
                 runtime=None, routes=None) -> None:
        self.entrypoint = entrypoint
        self.apps = apps
        self.tls = tls
        self.base_dir = base_dir
        self.runtime = runtime
        #: the entrypoint gateway's routes (capabilities/gateway_config.GatewayConfig), or None
        self.routes = routes if routes is not None else _gateway_routes(apps.get(entrypoint))

    def app_for(self, path: str) -> str:
        """The application ``path`` reaches: the entrypoint, or through a gateway
        entrypoint the target of the route that takes it (the gateway itself
        when none does)."""
        routes = self.routes
        if routes is None:
            return self.entrypoint
        route = routes.route(path)
        return self.entrypoint if route is None else route.to


def _gateway_routes(app):
    """The routes of a gateway application (its ``gateway`` key or its
    watt.gateway.json), or None when it is not a gateway."""
    if app is None:
        return None
    from capabilities.gateway_config import CONFIG_FILE, parse_config, read_config

    if getattr(app, "gateway", None) is not None:
        import msgspec

        return parse_config(msgspec.to_builtins(app.gateway), "watt.json (gateway)", app.id)
    if app.kind in (None, "gateway") and os.path.isfile(os.path.join(app.path, CONFIG_FILE)):
        return read_config(app.path, app.id)
    return None


def make_edge(config, runtime=None):
    """The entrypoint's :class:`~watt.edge.proxy.Edge` for a loaded config: the header
    rules of ``server`` and the pipeline of the stages it turns on."""
    from . import build_pipeline
    from .proxy import Edge

    server = config.server
    info = EdgeInfo(config.entrypoint, {app.id: app for app in config.applications},
                    tls=server.tls is not None, base_dir=config.base_dir, runtime=runtime)
    return Edge(server.user_header, server.trusted_proxies, build_pipeline(config, info))
