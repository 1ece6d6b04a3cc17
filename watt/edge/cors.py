"""``server.cors`` / ``applications[].cors``: CORS at the edge (stage ``cors``).

The policy is the one of the application the request goes to (``req.app``:
through a gateway, the routed application), else ``server.cors``.  A
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered
here: ``204`` with the allow headers, or ``403`` ``WATT_CORS_FORBIDDEN`` when
the origin or the method is not allowed.  Other requests with an allowed
``Origin`` get ``Access-Control-Allow-Origin`` (and credentials, exposed
headers) on their response; a request without ``Origin`` is untouched.
"""

from __future__ import annotations

from . import EdgeReply, Stage, problem, register_stage


class _Policy:
    __slots__ = ("any", "credentials", "expose", "headers", "max_age", "methods",
                 "method_set", "origins")

    def __init__(self, cfg) -> None:
        origins = [cfg.origin] if isinstance(cfg.origin, str) else list(cfg.origin)
        self.any = "*" in origins
        self.origins = frozenset(o.encode() for o in origins)
        self.methods = ", ".join(m.upper() for m in cfg.methods).encode()
        self.method_set = frozenset(m.upper().encode() for m in cfg.methods)
        self.headers = None if cfg.allowed_headers is None else \
            ", ".join(cfg.allowed_headers).encode()
        self.expose = ", ".join(cfg.exposed_headers).encode() if cfg.exposed_headers else None
        self.credentials = cfg.credentials
        self.max_age = None if cfg.max_age is None else str(cfg.max_age).encode()

    def allows(self, origin: bytes) -> bool:
        return self.any or origin in self.origins

    def origin_headers(self, origin: bytes) -> list:
        if self.any and not self.credentials:
            out = [(b"access-control-allow-origin", b"*")]
        else:  # echoed: a list of origins, or credentials (where `*` is not allowed)
            out = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out


class Cors(Stage):
    def __init__(self, default: _Policy | None, per_app: dict) -> None:
        self.default = default
        self.per_app = per_app  # app id -> _Policy, or None for "off"

    def check(self, req):
        origin = None
        preflight = None
        for name, value in req.headers:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = value
        if origin is None:
            return None
        policy = self.per_app.get(req.app, self.default)
        if policy is None:
            return None
        if req.method == "OPTIONS" and preflight is not None:
            return self._preflight(req, policy, origin, preflight)
        if policy.allows(origin):
            req.state["cors"] = (policy, origin)
        return None

    def _preflight(self, req, policy: _Policy, origin: bytes, method: bytes):
        if not policy.allows(origin):
            return problem(403, "WATT_CORS_FORBIDDEN", "Forbidden",
                           f"origin {origin.decode('latin-1')} is not allowed")
        if method.upper() not in policy.method_set:
            return problem(403, "WATT_CORS_FORBIDDEN", "Forbidden",
                           f"method {method.decode('latin-1')} is not allowed")
        headers = policy.origin_headers(origin)
        headers.append((b"access-control-allow-methods", policy.methods))
        asked = req.header(b"access-control-request-headers")
        allowed = policy.headers if policy.headers is not None else asked
        if allowed:
            headers.append((b"access-control-allow-headers", allowed))
        if policy.max_age is not None:
            headers.append((b"access-control-max-age", policy.max_age))
        headers.append((b"content-length", b"0"))
        return EdgeReply(204, headers, b"")

    def on_response(self, req, status, headers):
        found = req.state.get("cors")
        if found is None:
            return headers
        policy, origin = found
        headers = [h for h in headers if not h[0].startswith(b"access-control-")]
        headers += policy.origin_headers(origin)
        if policy.expose is not None:
            headers.append((b"access-control-expose-headers", policy.expose))
        return headers


def factory(config, info):
    default = _Policy(config.server.cors) if config.server.cors is not None else None
    per_app = {}
    for app in config.applications:
        if app.cors is False:
            per_app[app.id] = None
        elif app.cors is not None and app.cors is not True:
            per_app[app.id] = _Policy(app.cors)
    if default is None and not any(per_app.values()):
        return None
    return Cors(default, per_app)


register_stage("cors", factory)
