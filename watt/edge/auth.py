"""The edge's authentication stage (config key ``auth``): bearer tokens checked at
the entrypoint, per route prefix, before any application sees the request.

A JWT (HS256 with a shared secret; RS256/ES256 with a PEM public key or a JWKS
URL) is verified with PyJWT: signature, ``exp``/``nbf``/``iat`` with
``clockSkew`` leeway, ``iss`` and ``aud`` when configured.  A token that is not
a JWT goes to the route's RFC 7662 introspection endpoint when it has one.  A
path in ``publicPaths`` needs no token.  On success the verified claims go to
the application as JSON in the ``server.userHeader`` header (``x-watt-user``), which
the edge strips from every incoming request, so an application can trust it.

Failures are ``application/problem+json`` with ``WWW-Authenticate: Bearer``
(RFC 6750): 401 ``WATT_AUTH_MISSING_TOKEN`` / ``WATT_AUTH_INVALID_TOKEN``, 403
``WATT_AUTH_INSUFFICIENT_SCOPE``, 503 ``WATT_AUTH_UNAVAILABLE`` when the JWKS
or introspection server cannot be reached.

Verification runs here, in the main interpreter, because ``cryptography``
refuses to load in a subinterpreter.  PyJWT is imported only when the config
has ``auth`` (``pip install 'watt[auth]'``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import posixpath
import time

from watt.config_auth import check_auth
from watt.edge import EdgeRequest, Stage, problem, register_stage
from watt.errors import ConfigError

_STATUS_TEXT = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
#: Seconds a JWT that passed is remembered (never past its ``exp``): the same token
#: sent again costs a dict lookup instead of a signature check.
ACCEPTED_TTL = 60.0
#: Tokens remembered per route at most.
ACCEPTED_SIZE = 10_000


def _import_jwt():
    try:
        import jwt  # noqa: F401

        from watt.edge import auth_keys
    except ImportError as exc:
        raise ConfigError(f"`auth` needs PyJWT with its crypto extra ({exc}): "
                          "pip install 'watt[auth]'", code="WATT_AUTH_UNAVAILABLE",
                          key="auth") from None
    return auth_keys


def _prefix_matches(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class PublicPaths:
    """Exact paths, and subtrees written ``/docs/*`` (``/docs`` and below)."""

    __slots__ = ("exact", "trees")

    def __init__(self, patterns) -> None:
        self.exact = frozenset(p for p in patterns if not p.endswith("/*"))
        self.trees = tuple(p[:-2] or "/" for p in patterns if p.endswith("/*"))

    def __contains__(self, path: str) -> bool:
        return path in self.exact or any(_prefix_matches(t, path) for t in self.trees)


class Denied(Exception):
    """A token that does not pass: the status, code and RFC 6750 error it answers."""

    def __init__(self, status: int, code: str, detail: str, error: str | None = None,
                 scope: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.error, self.scope = error, scope


def _invalid(detail: str) -> Denied:
    return Denied(401, "WATT_AUTH_INVALID_TOKEN", detail, "invalid_token")


class JwtVerifier:
    """One route's ``jwt`` settings, ready to verify (keys loaded once)."""

    def __init__(self, cfg, base_dir: str, key_path: str) -> None:
        import jwt

        self.jwt = jwt
        self.cfg = cfg
        self.key = None
        self.jwks = None
        if cfg.secret is not None:
            self.key = cfg.secret
            self.algorithms = list(cfg.algorithms or ["HS256"])
        else:
            self.algorithms = list(cfg.algorithms or ["RS256", "ES256"])
        if cfg.public_key is not None:
            self.key = _load_pem(cfg.public_key, base_dir, key_path)
        if cfg.jwks_url is not None:
            auth_keys = _import_jwt()
            self.jwks = auth_keys.JwksCache(cfg.jwks_url, cfg.jwks_cache_ttl,
                                            cfg.jwks_refetch_interval, cfg.timeout)
        self.options = {"require": list(cfg.required_claims)}

    @staticmethod
    def header(token: str) -> dict:
        """The token's header, only to pick a key (``jwt.decode`` checks it all again:
        PyJWT's own parse costs ~40 µs, so it runs once)."""
        segment = token.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except ValueError:
            raise _invalid("malformed token: its header is not base64url JSON") from None
        if not isinstance(header, dict):
            raise _invalid("malformed token: its header is not a JSON object")
        return header

    def verify(self, token: str, key) -> dict:
        jwt = self.jwt
        cfg = self.cfg
        try:
            return jwt.decode(token, key, algorithms=self.algorithms, audience=cfg.audience,
                              issuer=cfg.issuer, leeway=cfg.clock_skew, options=self.options)
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise _invalid(f"the token's audience is not {cfg.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise _invalid(f"the token's issuer is not {cfg.issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise _invalid("the token's signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise _invalid(f"the token's algorithm is not one of "
                           f"{', '.join(self.algorithms)}") from None
        except jwt.PyJWTError as exc:
            raise _invalid(str(exc)) from None

    def key_now(self, token: str):
        """``(key, must_fetch)`` for ``token``; raises :class:`Denied`."""
        if self.jwks is None:
            return self.key, False  # jwt.decode refuses another algorithm itself
        header = self.header(token)
        if header.get("alg") not in self.algorithms:
            raise _invalid(f"the token's algorithm {header.get('alg')!r} is not one of "
                           f"{', '.join(self.algorithms)}")
        return self.jwks.lookup(header.get("kid"))

    def key_after_fetch(self, token: str):
        key = self.jwks.key(self.header(token).get("kid"))
        if key is None:
            raise _invalid("no key of the JWKS matches the token's kid")
        return key


def _load_pem(value: str, base_dir: str, key_path: str):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = value
    if "-----BEGIN" not in value:
        file = os.path.join(base_dir, value)
        try:
            with open(file, "rb") as fh:
                text = fh.read().decode("ascii", "replace")
        except OSError as exc:
            raise ConfigError(f"`{key_path}`: cannot read the public key file {file}: "
                              f"{exc.strerror}",
                              code="WATT_CONFIG_INVALID", key=key_path) from None
    try:
        return load_pem_public_key(text.encode())
    except ValueError as exc:
        where = "the file " + os.path.join(base_dir, value) if text is not value else "the text"
        raise ConfigError(f"`{key_path}`: {where} is not a PEM public key (a `-----BEGIN "
                          f"PUBLIC KEY-----` block; a certificate or private key is not one): "
                          f"{str(exc).split('. See https://', 1)[0]}",
                          code="WATT_CONFIG_INVALID", key=key_path) from None


class AuthRoute:
    """One ``auth.routes[]`` entry, ready to check requests."""

    def __init__(self, cfg, public: PublicPaths, base_dir: str, key: str) -> None:
        self.prefix = cfg.prefix.rstrip("/") or "/"
        self.public = PublicPaths([*cfg.public_paths])
        self.shared_public = public
        self.scopes = frozenset(cfg.scopes)
        self.websocket = cfg.websocket  # where an upgrade may carry its token, or None
        self.accepted: dict[str, tuple[float, bytes]] = {}  # JWT -> (until, claims header)
        self.jwt = JwtVerifier(cfg.jwt, base_dir, f"{key}.jwt.publicKey") if cfg.jwt else None
        self.introspection = None
        if cfg.introspection is not None:
            i = cfg.introspection
            self.introspection = _import_jwt().IntrospectionCache(
                i.url, i.client_id, i.client_secret, i.cache_ttl, i.timeout)

    def is_public(self, path: str) -> bool:
        return path in self.public or path in self.shared_public

    def remembered(self, token: str, now: float) -> bytes | None:
        """The claims header of a JWT that passed within :data:`ACCEPTED_TTL`."""
        entry = self.accepted.get(token)
        if entry is None:
            return None
        if now >= entry[0]:
            del self.accepted[token]
            return None
        return entry[1]

    def remember(self, token: str, claims: dict, value: bytes, now: float) -> None:
        until = now + ACCEPTED_TTL
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            until = min(until, exp + self.jwt.cfg.clock_skew)
        if len(self.accepted) >= ACCEPTED_SIZE:
            self.accepted = {k: v for k, v in self.accepted.items() if v[0] > now}
            if len(self.accepted) >= ACCEPTED_SIZE:
                self.accepted.clear()
        self.accepted[token] = (until, value)


class AuthStage(Stage):
    """Checks the bearer token of requests under a protected prefix."""

    def __init__(self, auth, base_dir: str = ".", header: str = "x-watt-user") -> None:
        _import_jwt()
        public = PublicPaths(auth.public_paths)
        routes = [AuthRoute(r, public, base_dir, f"auth.routes[{i}]")
                  for i, r in enumerate(auth.routes)]
        self.routes = sorted(routes, key=lambda r: -len(r.prefix))
        self.header = header.lower().encode("latin-1")
        self.realm = auth.realm.replace('"', "'")
        self._prefetch = []  # JWKS fetched as the runtime starts, not at the first token
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._prefetch = [loop.create_task(r.jwt.jwks.refresh()) for r in self.routes
                          if r.jwt is not None and r.jwt.jwks is not None]

    def route(self, path: str) -> AuthRoute | None:
        for route in self.routes:
            if _prefix_matches(route.prefix, path):
                return route
        return None

    def protecting(self, path: str) -> AuthRoute | None:
        """The route that wants a token for ``path``, or None."""
        route = self.route(path)
        return None if route is None or route.is_public(path) else route

    def check(self, req: EdgeRequest):
        path = req.path
        route = self.protecting(path)
        if route is None and ("/." in path or "//" in path):
            # /docs/../admin: an application (or a proxy behind it) that resolves dot
            # segments would serve /admin; a token is needed if either reading wants one.
            route = self.protecting(posixpath.normpath("/" + path.lstrip("/")))
        scope = req.state.get("websocket")  # a WebSocket upgrade (watt/edge/asgi.py)
        carried = None if scope is None else self._websocket_token(scope, req, route)
        if route is None:
            return None
        try:
            token = carried or self._token(req)
            if route.jwt is not None and token.count(".") == 2:
                value = route.remembered(token, time.time())
                if value is not None:
                    return self._pass(req, value)
                key, fetch = route.jwt.key_now(token)
                if fetch:
                    return self._after_jwks(req, route, token)
                if key is None:
                    if not route.jwt.jwks.keys:  # never fetched, next try not due yet
                        raise Denied(503, "WATT_AUTH_UNAVAILABLE", "the JWKS could not be "
                                     "fetched")
                    raise _invalid("no key of the JWKS matches the token's kid")
                return self._accept(req, route, route.jwt.verify(token, key), token)
            if route.introspection is None:
                raise _invalid("the token is not a JWT")
            answer = route.introspection.cached(token)
            if answer is None:
                return self._after_introspection(req, route, token)
            return self._accept(req, route, _active(answer))
        except Denied as denied:
            return self._deny(denied)

    def _websocket_token(self, scope: dict, req: EdgeRequest, route: AuthRoute | None):
        """The token in a query parameter or subprotocol, if the route (public path or
        not) takes one there; taken out of what the application sees either way."""
        route = route or self.route(req.path)
        cfg = route.websocket if route is not None else None
        if cfg is None:
            return None
        from watt.edge.auth_ws import take_token

        token = take_token(scope, req, cfg)
        return token if req.header(b"authorization") is None else None

    def _token(self, req: EdgeRequest) -> str:
        value = req.header(b"authorization")
        if value is None:
            raise Denied(401, "WATT_AUTH_MISSING_TOKEN", "this path needs a bearer token "
                         "(Authorization: Bearer <token>)")
        scheme, _, token = value.decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Denied(401, "WATT_AUTH_INVALID_TOKEN", "the Authorization header is not "
                         "`Bearer <token>`", "invalid_request")
        return token

    async def _after_jwks(self, req, route: AuthRoute, token: str):
        jwks = route.jwt.jwks
        await jwks.refresh()
        try:
            if not jwks.keys:
                raise Denied(503, "WATT_AUTH_UNAVAILABLE", "the JWKS could not be fetched")
            key = route.jwt.key_after_fetch(token)
            return self._accept(req, route, route.jwt.verify(token, key), token)
        except Denied as denied:
            return self._deny(denied)

    async def _after_introspection(self, req, route: AuthRoute, token: str):
        from watt.edge.auth_keys import FetchError

        try:
            answer = await route.introspection.introspect(token)
        except FetchError:
            return self._deny(Denied(503, "WATT_AUTH_UNAVAILABLE",
                                     "the token introspection endpoint could not be reached"))
        try:
            return self._accept(req, route, _active(answer))
        except Denied as denied:
            return self._deny(denied)

    def _accept(self, req: EdgeRequest, route: AuthRoute, claims: dict,
                jwt_token: str | None = None):
        """Check the scopes, then pass the claims on (and remember a JWT that passed)."""
        if route.scopes:
            granted = claims.get("scope", claims.get("scp", ""))
            granted = set(granted.split() if isinstance(granted, str) else granted or ())
            missing = sorted(route.scopes - granted)
            if missing:
                raise Denied(403, "WATT_AUTH_INSUFFICIENT_SCOPE",
                             f"the token lacks the scope(s) {' '.join(missing)}",
                             "insufficient_scope", " ".join(sorted(route.scopes)))
        value = json.dumps(claims, separators=(",", ":"), ensure_ascii=True).encode()
        if jwt_token is not None:
            route.remember(jwt_token, claims, value, time.time())
        return self._pass(req, value)

    def _pass(self, req: EdgeRequest, value: bytes) -> None:
        # The edge already dropped any copy the client sent (watt.edge.proxy).
        req.headers.append((self.header, value))
        return None

    def _deny(self, denied: Denied):
        challenge = f'Bearer realm="{self.realm}"'
        if denied.error is not None:
            detail = denied.detail.replace('"', "'").replace("\\", "/")
            challenge += f', error="{denied.error}", error_description="{detail}"'
        if denied.scope is not None:
            challenge += f', scope="{denied.scope}"'
        headers = [] if denied.status == 503 else [(b"www-authenticate",
                                                     challenge.encode("ascii", "replace"))]
        return problem(denied.status, denied.code, _STATUS_TEXT[denied.status], denied.detail,
                       headers)


def _active(answer: dict) -> dict:
    """The claims of an introspection answer, if it says the token is active."""
    if answer.get("active") is not True:
        raise _invalid("the token is not active")
    exp = answer.get("exp")
    if isinstance(exp, int | float) and exp <= time.time():
        raise _invalid("the token has expired")
    return {k: v for k, v in answer.items() if k != "active"}


def factory(config, info) -> AuthStage | None:
    """``auth`` from the config (``LoadedConfig.config.auth``), or None when unset."""
    auth = getattr(getattr(config, "config", config), "auth", None)
    if auth is None:
        return None
    server = getattr(config, "server", None)
    try:
        check_auth(auth)
        return AuthStage(auth, getattr(info, "base_dir", None) or
                         getattr(config, "base_dir", "."),
                         getattr(server, "user_header", "x-watt-user"))
    except ConfigError as exc:  # name the file, as a config error found at load would
        exc.file = exc.file or getattr(config, "file", None)
        raise


register_stage("auth", factory)
