"""Configuration sections that belong to one capability: the ``gateway`` routes and
the ``command`` program's timeouts and listening mode.

Part of the schema in :mod:`watt.config` (apart only to keep that module
readable).  These keys can also live in the capability's own file in the
application's folder (``watt.gateway.json``, ``watt.command.json``); keys in
``watt.json`` win.  The capability validates again when it loads (it runs in the
worker, where msgspec does not load), so both ways give the same errors.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class HeaderRewriteConfig(_Section):
    """Header changes, applied in this order: remove, set (replace), add (append)."""

    remove: Annotated[list[str], _doc("Header names to drop.")] = []
    set: Annotated[dict[str, str], _doc("Headers to replace (or add when absent).")] = {}
    add: Annotated[dict[str, str], _doc("Headers to append.")] = {}


class GatewayRouteConfig(_Section):
    """One path prefix of the gateway and the application it goes to."""

    prefix: Annotated[str, _doc("Path prefix, whole segments (`/api` takes `/api/x`, not "
                                "`/apix`); `/` takes the rest.", pattern=r"^/")]
    to: Annotated[str, _doc("The application id the requests go to, over the mesh.")]
    strip_prefix: Annotated[bool, _doc("Cut the prefix off the path the application "
                                       "sees.")] = True
    request_headers: Annotated[HeaderRewriteConfig | None,
                               _doc("Changes to the request's headers.")] = None
    response_headers: Annotated[HeaderRewriteConfig | None,
                                _doc("Changes to the response's headers.")] = None
    openapi: Annotated[bool | str, _doc("Merge this application's OpenAPI document: true "
                                        "(at `/openapi.json`), false, or its path.")] = True


class GatewayOpenApiConfig(_Section):
    """The gateway's merged OpenAPI document."""

    path: Annotated[str, _doc("Where the gateway serves it.", pattern=r"^/")] = "/openapi.json"
    title: Annotated[str, _doc("Its `info.title`.")] = "Watt gateway"
    version: Annotated[str, _doc("Its `info.version`.")] = "1.0.0"


class GatewayConfig(_Section):
    """gateway: the routes (what `watt.gateway.json` holds)."""

    routes: Annotated[list[GatewayRouteConfig], _doc("The routes; the longest matching "
                                                     "prefix wins.", min_length=1)]
    openapi: Annotated[GatewayOpenApiConfig | bool,
                       _doc("The merged OpenAPI document, or false for none.")] = \
        GatewayOpenApiConfig()


CommandListen = Literal["port", "socket"]
