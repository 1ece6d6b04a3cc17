"""The runtime's own HTTP server, off the entrypoint: probes for load balancers.

``metrics.hostname:metrics.port`` serves ``GET /ready`` and ``GET /live`` for
Kubernetes probes and load balancers (the Prometheus ``/metrics`` endpoint is
the observability issue's work and will join them here).  It runs on the main
loop with the hypercorn engine, never through an application's worker, so a
busy or broken application cannot hide the runtime's own state.
"""

from __future__ import annotations

import json

from ..capability import accept_lifespan


class ProbesApp:
    """``/ready``: every application has a ready worker; ``/live``: the runtime runs."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            status, body = 405, {"error": "only GET and HEAD"}
        elif scope["path"] == "/ready":
            status, body = self.ready()
        elif scope["path"] == "/live":
            status, body = self.live()
        else:
            status, body = 404, {"error": "not found", "paths": ["/ready", "/live"]}
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else data})

    def ready(self) -> tuple[int, dict]:
        """Ready to take traffic: running, and each application has a ready worker."""
        apps = {app["id"]: sum(w["status"] == "ready" for w in app["workers"])
                for app in self.runtime.applications()}
        waiting = sorted(app_id for app_id, ready in apps.items() if not ready)
        ok = self.runtime.state == "running" and not waiting
        return (200 if ok else 503), {"ready": ok, "state": self.runtime.state,
                                      "readyWorkers": apps, "notReady": waiting}

    def live(self) -> tuple[int, dict]:
        """Alive: the main loop answers and the runtime is not shutting down."""
        ok = self.runtime.state in ("starting", "running")
        return (200 if ok else 503), {"live": ok, "state": self.runtime.state}
