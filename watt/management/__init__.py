"""The management API: a JSON HTTP API on a unix socket only this user can reach.

Every runtime serves it (unless ``managementApi`` is false); the ``watt``
commands (``ps``, ``applications``, ``env``, ``inject``, ``restart``,
``stop``) are its clients.  docs/cli.md describes the endpoints and the
runtime serves its own OpenAPI document at ``GET /api/v1/openapi.json``.

- ``sockets.py``: where the sockets live, and the 0700/0600 checks;
- ``api.py``: the ASGI app (:class:`ManagementApp`) and the route table;
- ``endpoints.py``: the endpoints; ``openapi.py``: their document;
- ``server.py``: h11 over asyncio's unix server (:class:`ManagementServer`);
- ``client.py``: the synchronous client the commands use.
"""

from __future__ import annotations

from . import dashboard as _dashboard  # noqa: F401 - /stats, /traces, /dashboard
from . import endpoints as _endpoints  # noqa: F401 - registers the routes
from . import observe as _observe  # noqa: F401 - /metrics and /logs
from .api import PREFIX, ROUTES, ManagementApp, Reply, Request, route
from .client import (
    ManagementUnreachable,
    call,
    find_runtime,
    list_runtimes,
    request,
    stream_lines,
    wait_gone,
)
from .server import ManagementServer
from .sockets import check_private_dir, ensure_private_dir, socket_dir

__all__ = ["PREFIX", "ROUTES", "ManagementApp", "ManagementServer", "ManagementUnreachable",
           "Reply", "Request", "call", "check_private_dir", "ensure_private_dir",
           "find_runtime", "list_runtimes", "request", "route", "socket_dir", "stream_lines",
           "wait_gone"]
