"""Authentication at the edge (config ``auth``): real tokens signed in the test with
its own keys (an HS256 secret, an RS256 key in a PEM file, ES256 and RS256 keys in
a JWKS served by a local HTTP server, which rotates), an RFC 7662 introspection
server, all in front of a real runtime; the cache decisions on a fake clock."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import urllib.parse

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support import app_config

from watt.config import load_config
from watt.config_auth import AuthConfig, check_auth
from watt.edge.auth import ACCEPTED_TTL, AuthStage, PublicPaths
from watt.edge.auth_keys import INACTIVE_TTL, IntrospectionCache, JwksCache
from watt.errors import ConfigError
from watt.testing import RuntimeHandle

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
ISSUER = "https://issuer.test"
AUDIENCE = "watt-tests"


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ec_new = ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def jwk(private, kid: str, alg: str) -> dict:
        algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else \
            jwt.algorithms.RSAAlgorithm
        return dict(json.loads(algorithm.to_jwk(private.public_key())), kid=kid, alg=alg,
                    use="sig")


class Authority(http.server.ThreadingHTTPServer):
    """A JWKS endpoint (its keys can change) and an RFC 7662 introspection endpoint."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.jwks: dict = {"keys": []}
        self.jwks_fetches = 0
        self.introspections = 0
        self.active: dict[str, dict] = {}  # opaque token -> its claims

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Authority

    def _json(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.jwks_fetches += 1
        self._json(200, self.server.jwks)

    def do_POST(self):  # noqa: N802
        self.server.introspections += 1
        expected = "Basic " + base64.b64encode(b"edge:edge-secret").decode()
        if self.headers.get("authorization") != expected:
            self._json(401, {"error": "invalid_client"})
            return
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["content-length"]))
                                     .decode())
        claims = self.server.active.get(form["token"][0])
        self._json(200, {"active": True, **claims} if claims else {"active": False})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def authority(keys):
    server = Authority()
    server.jwks = {"keys": [Keys.jwk(keys.ec, "ec-1", "ES256"),
                            Keys.jwk(keys.rsa, "rsa-1", "RS256")]}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def rt(keys, authority, tmp_path_factory, unused_port):
    pem = tmp_path_factory.mktemp("keys") / "rsa.pem"
    pem.write_bytes(keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    jwks = {"jwksUrl": authority.base + "/jwks.json", "jwksRefetchInterval": 0}
    introspection = {"url": authority.base + "/introspect", "clientId": "edge",
                     "clientSecret": "edge-secret"}
    config = {
        "applications": [app_config("web", "edge_echo")],
        "auth": {
            "publicPaths": ["/whoami"],
            "routes": [
                {"prefix": "/hs", "jwt": {"secret": SECRET, "issuer": ISSUER,
                                          "audience": AUDIENCE, "clockSkew": 30},
                 "publicPaths": ["/hs/open/*"]},
                {"prefix": "/rs", "jwt": {"publicKey": str(pem), "algorithms": ["RS256"]}},
                {"prefix": "/es", "jwt": jwks},
                {"prefix": "/slow-rotation",
                 "jwt": dict(jwks, jwksRefetchInterval=3600)},
                {"prefix": "/opaque", "introspection": introspection, "scopes": ["read"]},
                {"prefix": "/admin", "jwt": {"secret": SECRET}, "scopes": ["admin"]},
                {"prefix": "/mixed", "jwt": {"secret": SECRET}, "introspection": introspection},
                {"prefix": "/down", "jwt": {"jwksUrl": f"http://127.0.0.1:{unused_port}/jwks",
                                            "timeout": 2}},
            ],
        },
    }
    with RuntimeHandle(config) as handle:
        yield handle


def hs256(**claims) -> str:
    base = {"sub": "ada", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


_CLIENT = httpx.Client(timeout=30)  # one client: making one costs ~0.1 s (its TLS context)


def call(rt, path: str, token: str | None = None, **headers) -> httpx.Response:
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return _CLIENT.get(rt.url + path, headers=headers)


def user_of(reply: httpx.Response) -> dict:
    """The claims the application got in x-watt-user."""
    return json.loads(reply.json()["headers"]["x-watt-user"])


def problem_of(reply: httpx.Response, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["code"] == code and body["status"] == status
    return body


def test_a_valid_token_passes_its_claims_to_the_application(rt):
    reply = call(rt, "/hs/headers", hs256(role="cook"), **{"x-watt-user": '{"sub":"root"}'})
    assert reply.status_code == 200
    user = user_of(reply)  # the verified claims, not the forgery
    assert user["sub"] == "ada" and user["role"] == "cook" and user["iss"] == ISSUER


def test_missing_and_malformed_tokens_get_401_with_a_challenge(rt):
    reply = call(rt, "/hs/headers")
    problem_of(reply, 401, "WATT_AUTH_MISSING_TOKEN")
    assert reply.headers["www-authenticate"] == 'Bearer realm="watt"'
    reply = call(rt, "/hs/headers", authorization="Basic YWRhOnB3")
    problem_of(reply, 401, "WATT_AUTH_INVALID_TOKEN")
    assert 'error="invalid_request"' in reply.headers["www-authenticate"]
    reply = call(rt, "/hs/headers", "not.a.jwt")
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]


@pytest.mark.parametrize(("claims", "detail"), [
    ({"exp": int(time.time()) - 120}, "expired"),
    ({"iss": "https://evil.test"}, "issuer"),
    ({"aud": "someone-else"}, "audience"),
    ({"nbf": int(time.time()) + 600}, "not valid yet"),
])
def test_expiry_issuer_audience_failures(rt, claims, detail):
    body = problem_of(call(rt, "/hs/headers", hs256(**claims)), 401, "WATT_AUTH_INVALID_TOKEN")
    assert detail in body["detail"]


def test_clock_skew_and_signature(rt):
    assert call(rt, "/hs/headers", hs256(exp=int(time.time()) - 5)).status_code == 200
    forged = jwt.encode({"sub": "ada", "iss": ISSUER, "aud": AUDIENCE,
                         "exp": int(time.time()) + 60}, SECRET + "x", algorithm="HS256")
    body = problem_of(call(rt, "/hs/headers", forged), 401, "WATT_AUTH_INVALID_TOKEN")
    assert "signature" in body["detail"]
    unsigned = jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, None, algorithm="none")
    problem_of(call(rt, "/hs/headers", unsigned), 401, "WATT_AUTH_INVALID_TOKEN")


def test_public_paths_and_unprotected_prefixes_need_no_token(rt):
    assert call(rt, "/whoami").status_code == 200  # auth.publicPaths
    assert call(rt, "/hs/open").status_code == 200  # the route's publicPaths
    assert call(rt, "/hs/open/anything").status_code == 200
    assert call(rt, "/hs").status_code == 401
    assert call(rt, "/hsx/whoami").status_code == 200  # /hs is a segment, not a prefix
    assert call(rt, "/headers").status_code == 200  # no route protects /


def raw_status(rt, path: str) -> int:
    """GET ``path`` exactly as written (httpx would resolve its dot segments first)."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(rt.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(("path", "status"), [
    ("/hs/open/x", 200),  # public, as written
    ("/hs/open/../secret", 401),  # public as written, /hs/secret once resolved
    ("/whoami/../hs/x", 401),
    ("/hs/open/%2e%2e/secret", 401),
    ("//hs/x", 401),
])
def test_dot_segments_cannot_reach_a_protected_path(rt, path, status):
    assert raw_status(rt, path) == status


def test_rs256_with_a_pem_key_file(rt, keys):
    token = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, keys.rsa, algorithm="RS256")
    reply = call(rt, "/rs/headers", token)
    assert reply.status_code == 200 and user_of(reply)["sub"] == "bob"
    hmac = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    body = problem_of(call(rt, "/rs/headers", hmac), 401, "WATT_AUTH_INVALID_TOKEN")
    assert "algorithm" in body["detail"]


def test_jwks_keys_rotation_and_refetch(rt, keys, authority):
    def es(private, kid: str) -> str:
        return jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, private,
                          algorithm="ES256", headers={"kid": kid})

    assert call(rt, "/es/headers", es(keys.ec, "ec-1")).status_code == 200
    rsa_token = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, keys.rsa,
                           algorithm="RS256", headers={"kid": "rsa-1"})
    assert call(rt, "/es/headers", rsa_token).status_code == 200
    before = authority.jwks_fetches
    assert call(rt, "/es/headers", es(keys.ec, "ec-1")).status_code == 200
    assert authority.jwks_fetches == before  # cached
    # Rotation: the authority publishes a new key; a token with its kid makes one fetch.
    authority.jwks = {"keys": [*authority.jwks["keys"], Keys.jwk(keys.ec_new, "ec-2", "ES256")]}
    assert call(rt, "/es/headers", es(keys.ec_new, "ec-2")).status_code == 200
    assert authority.jwks_fetches == before + 1
    # A kid the JWKS does not have: one fetch, then 401.
    body = problem_of(call(rt, "/es/headers", es(keys.ec_new, "nobody")), 401,
                      "WATT_AUTH_INVALID_TOKEN")
    assert "kid" in body["detail"] and authority.jwks_fetches == before + 2
    # A key signed by another key under a known kid fails its signature.
    problem_of(call(rt, "/es/headers", es(keys.ec_new, "ec-1")), 401, "WATT_AUTH_INVALID_TOKEN")


def test_unknown_kids_are_refetched_at_most_every_interval(rt, keys, authority):
    token = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, keys.ec,
                       algorithm="ES256", headers={"kid": "ec-1"})
    assert call(rt, "/slow-rotation/headers", token).status_code == 200  # first fetch
    before = authority.jwks_fetches
    for kid in ("x1", "x2", "x3"):
        forged = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, keys.ec,
                            algorithm="ES256", headers={"kid": kid})
        problem_of(call(rt, "/slow-rotation/headers", forged), 401, "WATT_AUTH_INVALID_TOKEN")
    assert authority.jwks_fetches == before


def test_scopes_are_403_with_insufficient_scope(rt):
    reply = call(rt, "/admin/headers", jwt.encode(
        {"sub": "ada", "scope": "read write", "exp": int(time.time()) + 60}, SECRET))
    problem_of(reply, 403, "WATT_AUTH_INSUFFICIENT_SCOPE")
    assert 'error="insufficient_scope"' in reply.headers["www-authenticate"]
    assert 'scope="admin"' in reply.headers["www-authenticate"]
    ok = jwt.encode({"sub": "ada", "scp": ["admin"], "exp": int(time.time()) + 60}, SECRET)
    assert call(rt, "/admin/headers", ok).status_code == 200


def test_introspection_of_opaque_tokens_is_cached(rt, authority):
    authority.active["opaque-good"] = {"sub": "zoe", "scope": "read",
                                       "exp": int(time.time()) + 300}
    authority.active["opaque-no-scope"] = {"sub": "zoe", "scope": "write"}
    before = authority.introspections
    for _ in range(3):
        reply = call(rt, "/opaque/headers", "opaque-good")
        assert reply.status_code == 200
        assert user_of(reply)["sub"] == "zoe"
    assert authority.introspections == before + 1
    problem_of(call(rt, "/opaque/headers", "opaque-revoked"), 401, "WATT_AUTH_INVALID_TOKEN")
    problem_of(call(rt, "/opaque/headers", "opaque-no-scope"), 403,
               "WATT_AUTH_INSUFFICIENT_SCOPE")


def test_jwts_are_verified_locally_and_opaque_tokens_introspected(rt, authority):
    authority.active["opaque-mixed"] = {"sub": "kim"}
    before = authority.introspections
    token = jwt.encode({"sub": "lee", "exp": int(time.time()) + 60}, SECRET)
    assert user_of(call(rt, "/mixed/x", token))["sub"] == "lee"
    assert authority.introspections == before
    assert user_of(call(rt, "/mixed/x", "opaque-mixed"))["sub"] == "kim"
    assert authority.introspections == before + 1
    problem_of(call(rt, "/hs/x", "opaque-mixed"), 401, "WATT_AUTH_INVALID_TOKEN")  # jwt only


def test_an_unreachable_jwks_is_503(rt):
    token = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "k" * 32,
                       algorithm="HS256", headers={"kid": "a"})
    # An HMAC token is refused before any fetch: the route takes RS256/ES256.
    problem_of(call(rt, "/down/headers", token), 401, "WATT_AUTH_INVALID_TOKEN")
    es = jwt.encode({"sub": "x", "exp": int(time.time()) + 60},
                    ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    reply = call(rt, "/down/headers", es)
    problem_of(reply, 503, "WATT_AUTH_UNAVAILABLE")
    assert "www-authenticate" not in reply.headers


@pytest.fixture(scope="module")
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the pure parts ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jwks_cache_decisions(keys):
    clock = Clock()
    cache = JwksCache("http://jwks.test", ttl=600, refetch_interval=30, clock=clock)
    assert cache.lookup("ec-1") == (None, True)  # nothing fetched yet
    cache.tried_at = clock.now
    cache.load({"keys": [Keys.jwk(keys.ec, "ec-1", "ES256")]})
    key, fetch = cache.lookup("ec-1")
    assert key is not None and not fetch
    assert cache.lookup(None)[0] is key  # a single key needs no kid
    assert cache.lookup("new") == (None, False)  # unknown kid, too soon to refetch
    clock.now += 30
    assert cache.lookup("new") == (None, True)  # the rate limit allows one now
    clock.now += 600
    key, fetch = cache.lookup("ec-1")
    assert key is not None and fetch  # expired: refetch, the old key still there meanwhile
    cache._pending = object()  # a fetch in flight (the one at start): join it, even too soon
    cache.tried_at = clock.now
    assert cache.lookup("new") == (None, True) and cache.lookup("ec-1")[0] is key


def test_introspection_cache_lifetimes():
    clock = Clock()
    cache = IntrospectionCache("http://as.test/introspect", "id", "secret", ttl=300,
                               clock=clock)
    cache.keep("a", {"active": True, "exp": clock.now + 60})
    cache.keep("b", {"active": True})
    cache.keep("c", {"active": False})
    cache.keep("d", {"active": True, "exp": clock.now - 1})  # already expired: not kept
    assert cache.cached("a") and cache.cached("b") and cache.cached("c") == {"active": False}
    assert cache.cached("d") is None
    clock.now += INACTIVE_TTL
    assert cache.cached("c") is None and cache.cached("a")
    clock.now += 60
    assert cache.cached("a") is None and cache.cached("b")
    clock.now += 300
    assert cache.cached("b") is None


def test_public_path_patterns():
    public = PublicPaths(["/health", "/docs/*"])
    assert "/health" in public and "/docs" in public and "/docs/a/b" in public
    assert "/healthz" not in public and "/docsx" not in public and "/other" not in public


@pytest.mark.parametrize(("route", "key"), [
    ({"prefix": "/"}, "auth.routes[0]"),
    ({"prefix": "/", "jwt": {"secret": "s", "jwksUrl": "https://x.test/jwks"}},
     "auth.routes[0].jwt"),
    ({"prefix": "/", "jwt": {"jwksUrl": "https://x.test/jwks", "algorithms": ["HS256"]}},
     "auth.routes[0].jwt.algorithms"),
    ({"prefix": "/", "jwt": {"secret": "s", "algorithms": ["HS256", "RS256"]}},
     "auth.routes[0].jwt.algorithms"),
])
def test_auth_config_mistakes_name_the_key(route, key):
    config = {"applications": [app_config("web", "edge_echo")], "auth": {"routes": [route]}}
    with pytest.raises(ConfigError) as info:
        check_auth(msgspec.convert(config["auth"], AuthConfig))
    assert info.value.key == key
    with pytest.raises(ConfigError) as info:  # found at load (`watt config`), not only at start
        load_config(config)
    assert info.value.key == key and f"`{key}`" in str(info.value)


@pytest.mark.parametrize("content", [None, "not a key"])
def test_a_bad_public_key_fails_the_start(tmp_path, content):
    if content is not None:
        (tmp_path / "bad.pem").write_text(content)
    auth = msgspec.convert({"routes": [{"prefix": "/", "jwt": {"publicKey": "bad.pem"}}]},
                           AuthConfig)
    with pytest.raises(ConfigError) as info:
        AuthStage(auth, str(tmp_path))
    assert info.value.key == "auth.routes[0].jwt.publicKey"
    assert "`auth.routes[0].jwt.publicKey`" in str(info.value)  # the key, in the message too
    assert ("not a PEM public key" if content else "cannot read") in str(info.value)


def test_a_jwt_that_passed_is_remembered_never_past_its_exp():
    loaded = load_config({"applications": [app_config("web", "edge_echo")], "auth": {
        "routes": [{"prefix": "/", "jwt": {"secret": SECRET, "clockSkew": 5}}]}})
    route = AuthStage(loaded.config.auth).routes[0]
    route.remember("t", {"exp": 1000}, b"claims", now=990)
    assert route.remembered("t", 1004) == b"claims"
    assert route.remembered("t", 1005) is None and "t" not in route.accepted
    route.remember("u", {}, b"claims", now=0)  # no exp: ACCEPTED_TTL
    assert route.remembered("u", ACCEPTED_TTL - 1) and route.remembered("u", ACCEPTED_TTL) is None


def test_the_asgi_engines_check_tokens_too(keys, authority):
    """hypercorn (an ASGI engine, the pipeline through watt.edge.asgi): a JWKS fetch
    awaited inside a request, a 401, and the claims header."""
    config = {"applications": [app_config("web", "edge_echo")], "auth": {"routes": [
        {"prefix": "/", "jwt": {"jwksUrl": authority.base + "/jwks.json"}}]}}
    with RuntimeHandle(config, engine="hypercorn") as handle:
        token = jwt.encode({"sub": "hyp", "exp": int(time.time()) + 60}, keys.ec,
                           algorithm="ES256", headers={"kid": "ec-1"})
        reply = call(handle, "/x", token, **{"x-watt-user": "forged"})
        assert reply.status_code == 200 and user_of(reply)["sub"] == "hyp"
        reply = call(handle, "/x")
        problem_of(reply, 401, "WATT_AUTH_MISSING_TOKEN")
        assert reply.headers["www-authenticate"] == 'Bearer realm="watt"'
