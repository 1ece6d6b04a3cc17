"""The admin dashboard: one page over the management API (``watt admin``).

- ``routes.py``: the endpoints the page reads (``/stats``, ``/traces``) and acts
  through (``/applications/{id}/log-level``), and ``/dashboard`` to start it;
- ``server.py``: the TCP listener behind a token, serving ``static/``;
- ``static/``: the built page (index.html, app.js, app.css), committed, so a
  user needs no build step: ``frontend/dashboard/`` holds its source and
  ``make dashboard`` rebuilds it.
"""

from __future__ import annotations

from . import routes as _routes  # noqa: F401 - registers the routes
from .routes import group_traces, summarize
from .server import DashboardApp, DashboardServer, dashboard_line, start_configured

__all__ = ["DashboardApp", "DashboardServer", "dashboard_line", "group_traces",
           "start_configured", "summarize"]
