"""Configuration sections of the edge's authentication and request validation:
the top-level ``auth`` key and ``applications[].openapi`` / ``applications[].validation``.

Part of the schema in :mod:`watt.config` (apart only to keep that module readable);
the same rules hold: unknown keys are errors, keys are camelCase.  What msgspec
cannot say (a route with no way to check a token, HMAC algorithms with a public
key) is checked by :func:`check_auth`, with the key path in the message.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from watt.errors import ConfigError


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                    "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
_PATH = r"^/"


class JwtConfig(_Section):
    """Bearer tokens that are JWTs: where the key comes from and which claims must hold."""

    secret: Annotated[Annotated[str, msgspec.Meta(min_length=1)] | None,
                      _doc("Shared secret of HMAC tokens (HS256); use a `${VAR}` placeholder "
                           "rather than the secret itself.")] = None
    public_key: Annotated[Annotated[str, msgspec.Meta(min_length=1)] | None,
                          _doc("A PEM public key (RS256/ES256): the PEM text, or a file "
                               "relative to the config file.")] = None
    jwks_url: Annotated[Annotated[str, msgspec.Meta(pattern=r"^https?://")] | None,
                        _doc("URL of a JWKS (`/.well-known/jwks.json`): keys are picked by "
                             "`kid` and cached.")] = None
    jwks_cache_ttl: Annotated[int, _doc("Seconds a fetched JWKS is used before it is fetched "
                                        "again.", ge=1)] = 600
    jwks_refetch_interval: Annotated[
        int, _doc("Fewest seconds between two fetches caused by a `kid` not in the cache "
                  "(key rotation), so unknown kids cannot flood the JWKS server.", ge=0)] = 30
    algorithms: Annotated[
        list[Algorithm] | None,
        _doc("Accepted `alg` values (default: HS256 with `secret`, RS256 and ES256 with a "
             "public key or JWKS)."),
    ] = None
    issuer: Annotated[str | list[str] | None,
                      _doc("Required `iss` (one value, or a list of accepted ones).")] = None
    audience: Annotated[str | list[str] | None,
                        _doc("Required `aud`: the token must name this one (or one of "
                             "these).")] = None
    clock_skew: Annotated[int, _doc("Seconds of leeway for `exp`, `nbf` and `iat`.",
                                    ge=0)] = 30
    required_claims: Annotated[list[str], _doc("Claims a token must carry (default: `exp`).")] = \
        msgspec.field(default_factory=lambda: ["exp"])
    timeout: Annotated[float, _doc("Seconds a JWKS fetch may take.", gt=0)] = 5.0


class IntrospectionConfig(_Section):
    """OAuth2 token introspection (RFC 7662) for opaque tokens."""

    url: Annotated[str, _doc("The authorization server's introspection endpoint.",
                             pattern=r"^https?://")]
    client_id: Annotated[str | None, _doc("Client id for HTTP basic authentication.")] = None
    client_secret: Annotated[str | None, _doc("Client secret (use a `${VAR}` "
                                              "placeholder).")] = None
    cache_ttl: Annotated[int, _doc("Most seconds an answer is reused (an active token's is "
                                   "also never kept past its `exp`).", ge=0)] = 300
    timeout: Annotated[float, _doc("Seconds a call may take.", gt=0)] = 5.0


class WebSocketTokenConfig(_Section):
    """Where a WebSocket upgrade may carry its bearer token when it has no
    `Authorization` header (browsers cannot set one on a WebSocket)."""

    query: Annotated[
        Annotated[str, msgspec.Meta(min_length=1)] | None,
        _doc("Name of a query parameter that holds the token (e.g. `access_token`); the "
             "edge removes it before the application sees the query."),
    ] = None
    subprotocol: Annotated[
        Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")] | None,
        _doc("Prefix of a `Sec-WebSocket-Protocol` entry that holds the token (e.g. "
             "`bearer.`, sent as `bearer.<token>`); the edge removes that entry before the "
             "application sees the subprotocols."),
    ] = None


class AuthRouteConfig(_Section):
    """Requests whose path starts with `prefix` need a valid bearer token."""

    prefix: Annotated[str, _doc("Path prefix, whole segments (`/api` takes `/api/x`, not "
                                "`/apix`); the longest matching prefix wins.", pattern=_PATH)]
    jwt: Annotated[JwtConfig | None, _doc("Verify JWTs.")] = None
    introspection: Annotated[
        IntrospectionConfig | None,
        _doc("Ask the authorization server about tokens that are not JWTs (all tokens when "
             "`jwt` is not set)."),
    ] = None
    scopes: Annotated[list[str], _doc("Scopes the token must grant (`scope` or `scp` claim); "
                                      "a valid token without them gets 403.")] = []
    public_paths: Annotated[
        list[str], _doc("Paths under this prefix that need no token: exact, or ending in "
                        "`/*` for a whole subtree.")] = []
    websocket: Annotated[
        WebSocketTokenConfig | None,
        _doc("WebSocket upgrades only: also take the token from a query parameter or a "
             "subprotocol (off by default: a query string ends up in proxies' logs)."),
    ] = None


class AuthConfig(_Section):
    """Authentication at the entrypoint, before any application sees the request; the
    verified claims go to the application as JSON in `server.userHeader`."""

    routes: Annotated[list[AuthRouteConfig], _doc("Protected path prefixes.", min_length=1)]
    realm: Annotated[str, _doc("The realm named in `WWW-Authenticate`.")] = "watt"
    public_paths: Annotated[
        list[str], _doc("Paths that need no token on any route: exact, or ending in `/*`.")] = []


OpenApiSetting = Annotated[
    bool | str,
    _doc("Where the application's OpenAPI document is: true (FastAPI's `/openapi.json`, "
         "Litestar's `/schema/openapi.json`; other kinds: none), a path it serves (starting "
         "with `/`), a JSON or YAML file relative to its folder, or false (none)."),
]
ValidationSetting = Annotated[
    bool, _doc("Validate requests against the application's OpenAPI document at the "
               "entrypoint (400 with every violation).")]


def check_auth(auth: AuthConfig) -> None:
    """Rules the schema cannot express; a :class:`ConfigError` names the key path."""
    for i, route in enumerate(auth.routes):
        key = f"auth.routes[{i}]"
        if route.jwt is None and route.introspection is None:
            raise ConfigError("needs `jwt` or `introspection` (a route no token can pass "
                              "protects nothing usable; list open paths in `publicPaths`)",
                              code="WATT_CONFIG_INVALID", key=key)
        ws = route.websocket
        if ws is not None and ws.query is None and ws.subprotocol is None:
            raise ConfigError("`websocket` needs `query` or `subprotocol` (where an upgrade "
                              "may carry its token)", code="WATT_CONFIG_INVALID",
                              key=f"{key}.websocket")
        jwt = route.jwt
        if jwt is None:
            continue
        sources = [k for k in ("secret", "public_key", "jwks_url") if getattr(jwt, k)]
        if len(sources) != 1:
            raise ConfigError("`jwt` needs exactly one of `secret`, `publicKey`, `jwksUrl`",
                              code="WATT_CONFIG_INVALID", key=f"{key}.jwt")
        algorithms = jwt.algorithms or (["HS256"] if jwt.secret else ["RS256", "ES256"])
        hmac = [a for a in algorithms if a.startswith("HS")]
        if jwt.secret is None and hmac:
            raise ConfigError(f"{', '.join(hmac)} needs `secret`: an HMAC algorithm with a "
                              "public key would let anyone who has the key sign tokens",
                              code="WATT_CONFIG_INVALID", key=f"{key}.jwt.algorithms")
        if jwt.secret is not None and len(hmac) != len(algorithms):
            raise ConfigError("`secret` verifies HMAC algorithms (HS256, HS384, HS512) only",
                              code="WATT_CONFIG_INVALID", key=f"{key}.jwt.algorithms")
