"""Configuration of the edge: what the entrypoint checks, adds and strips (docs/security.md).

``server.tls``, ``server.trustedProxies``, ``server.userHeader``,
``server.rateLimit``, ``server.cors``, ``server.securityHeaders`` (on
:class:`EdgeServerConfig`, the base of ``ServerConfig``) and
``applications[].cors``.  Part of the schema in :mod:`watt.config` (kept apart
only to keep that module readable); the same rules hold: unknown keys are
errors, keys are camelCase.  Names follow what Platformatic (fastify's
``@fastify/rate-limit`` ``max``/``timeWindow``, ``@fastify/cors``) and uvicorn
(``--forwarded-allow-ips``) users know.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

_TOKEN = r"^[a-z0-9!#$%&'*+.^_`|~-]+$"  # a lower-case header name
#: A method or a header name as a preflight sends it (any case).
_NAMES = list[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]]


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class TlsConfig(_Section):
    """HTTPS at the entrypoint: PEM files, relative to the config file."""

    cert: Annotated[str, _doc("Certificate chain (PEM).")]
    key: Annotated[str, _doc("Private key (PEM).")]
    password: Annotated[str | None, _doc("Password of an encrypted key.")] = None


class RateRoute(_Section):
    """A bucket per client IP for the paths under ``prefix``."""

    prefix: Annotated[str, _doc("Path prefix (segment boundaries: `/api` takes `/api/x`, "
                                "not `/apix`).", pattern=r"^/")]
    max: Annotated[int, _doc("Requests a client may burst (bucket size).", ge=1)]
    time_window: Annotated[int, _doc("Milliseconds in which `max` tokens come back.", ge=1)] \
        = 60_000


class RateLimitConfig(_Section):
    """Token buckets per client IP (after `trustedProxies`) and route prefix; 429 with
    Retry-After when empty."""

    max: Annotated[Annotated[int, msgspec.Meta(ge=1)] | None, _doc(
        "Requests a client may burst on paths no `routes` entry takes (none: those are not "
        "limited).")] = None
    time_window: Annotated[int, _doc("Milliseconds in which `max` tokens come back.", ge=1)] \
        = 60_000
    routes: Annotated[list[RateRoute], _doc("Limits per path prefix; the longest match "
                                            "wins.")] = []
    max_clients: Annotated[int, _doc("Buckets kept at most (memory bound); the least "
                                     "recently used go first.", ge=1)] = 100_000


class CorsConfig(_Section):
    """Cross-origin requests: preflights answered at the edge, headers on responses."""

    origin: Annotated[str | list[str], _doc("Allowed origins: `*`, one origin, or a list "
                                            "(exact `scheme://host[:port]`).")] = "*"
    methods: Annotated[_NAMES, _doc("Methods a preflight may ask for.")] = \
        msgspec.field(default_factory=lambda: ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"])
    allowed_headers: Annotated[_NAMES | None, _doc(
        "Request headers a preflight may ask for (none: whatever it asks).")] = None
    exposed_headers: Annotated[_NAMES, _doc("Response headers scripts may read.")] = []
    credentials: Annotated[bool, _doc("Send `Access-Control-Allow-Credentials: true` "
                                      "(the origin is then echoed, never `*`).")] = False
    max_age: Annotated[Annotated[int, msgspec.Meta(ge=0)] | None,
                       _doc("Seconds a browser may cache a preflight.")] = None


class SecurityHeadersConfig(_Section):
    """Headers added to responses that do not set them already; `null` turns one off."""

    hsts: Annotated[bool, _doc("Strict-Transport-Security, on HTTPS requests only.")] = True
    hsts_max_age: Annotated[int, _doc("Its max-age in seconds.", ge=0)] = 15_552_000
    hsts_include_sub_domains: Annotated[bool, _doc("Its includeSubDomains.")] = True
    content_type_options: Annotated[bool, _doc("X-Content-Type-Options: nosniff.")] = True
    frame_options: Annotated[str | None, _doc("X-Frame-Options.")] = "SAMEORIGIN"
    referrer_policy: Annotated[str | None, _doc("Referrer-Policy.")] = "no-referrer"
    content_security_policy: Annotated[str | None, _doc("Content-Security-Policy.")] = None
    cross_origin_opener_policy: Annotated[str | None, _doc("Cross-Origin-Opener-Policy.")] = \
        "same-origin"


class EdgeServerConfig(_Section):
    """The ``server`` keys of the edge (``ServerConfig`` extends this)."""

    tls: Annotated[TlsConfig | None, _doc("Serve HTTPS (and HTTP/2 via ALPN on granian and "
                                          "hypercorn).")] = None
    trusted_proxies: Annotated[list[str], _doc(
        "Peers whose x-forwarded-* (client address, scheme, host) are believed: IPs, CIDR "
        "networks, or `*`; from others they are replaced.")] = []
    user_header: Annotated[str, _doc(
        "Header carrying the authenticated user to applications; always stripped from "
        "incoming requests.", pattern=_TOKEN)] = "x-watt-user"
    rate_limit: Annotated[RateLimitConfig | None, _doc("Rate limits per client.")] = None
    cors: Annotated[CorsConfig | None, _doc("CORS for every application (see "
                                            "`applications[].cors`).")] = None
    security_headers: Annotated[bool | SecurityHeadersConfig, _doc(
        "Security headers on responses (`true`: the defaults).")] = False


#: The per-application field (``applications[].cors``): overrides ``server.cors``
#: for requests that go to that application; ``false`` turns CORS off for it.
AppCors = Annotated[bool | CorsConfig | None, _doc(
    "CORS for requests to this application, instead of `server.cors` (`false`: none).")]
