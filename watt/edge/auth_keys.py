"""Where the edge's authentication gets what it checks tokens with: a JWKS kept
in a cache (key rotation: a ``kid`` not in it causes one refetch, at most every
``jwksRefetchInterval``) and RFC 7662 introspection answers kept per token.

The decisions (use the cache? fetch? how long to keep an answer?) are plain
methods over a clock, tested without a server; the only I/O is :func:`http_json`,
a standard-library HTTP call run on a thread (a JWKS or introspection call is
rare, and the main loop must never block on one).  Imported only when ``auth``
is configured: PyJWT and ``cryptography`` load in the main interpreter only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
from loguru import logger

#: Answers kept at most (tokens seen); past it the oldest go first.
CACHE_SIZE = 10_000
#: How long an inactive (or failed) introspection answer is kept, in seconds.
INACTIVE_TTL = 30.0


class FetchError(Exception):
    """A JWKS or introspection call failed (network, status, not JSON)."""


def http_json(url: str, *, data: bytes | None = None, headers: dict | None = None,
              timeout: float = 5.0) -> dict:
    """GET (or POST ``data``) ``url`` and decode its JSON object; blocking, so
    it runs on a thread (:func:`fetch_json`)."""
    request = urllib.request.Request(url, data=data, headers={"accept": "application/json",
                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            payload = json.loads(response.read())
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise FetchError(f"{url}: {exc}") from None
    if not isinstance(payload, dict):
        raise FetchError(f"{url}: the answer is not a JSON object")
    return payload


async def fetch_json(url: str, **kwargs) -> dict:
    return await asyncio.to_thread(http_json, url, **kwargs)


class JwksCache:
    """The keys of one JWKS URL, by ``kid``."""

    def __init__(self, url: str, ttl: float, refetch_interval: float, timeout: float = 5.0,
                 clock=time.monotonic) -> None:
        self.url = url
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self.clock = clock
        self.keys: dict[str | None, jwt.PyJWK] = {}
        self.fetched_at: float | None = None  # last successful fetch
        self.tried_at: float | None = None  # last attempt, successful or not
        self.fetches = 0
        self._pending: asyncio.Future | None = None

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The cached key for ``kid`` (a JWKS of one key needs no kid)."""
        key = self.keys.get(kid)
        if kid is None and key is None and len(self.keys) == 1:
            key = next(iter(self.keys.values()))
        return key

    def lookup(self, kid: str | None) -> tuple[jwt.PyJWK | None, bool]:
        """``(key, fetch)``: the key for ``kid`` if cached, and whether a fetch
        should happen first (none yet, cache expired, or an unknown kid whose
        refetch the rate limit allows)."""
        now = self.clock()
        key = self.key(kid)
        if key is None and self._pending is not None:
            return None, True  # a fetch is in flight (the one at start): wait for it
        if self.fetched_at is None or now - self.fetched_at >= self.ttl:
            return key, self._may_try(now)
        if key is None:
            return None, self._may_try(now)
        return key, False

    def _may_try(self, now: float) -> bool:
        return self.tried_at is None or now - self.tried_at >= self.refetch_interval

    def load(self, document: dict) -> None:
        """Replace the keys with those of a JWKS document (unusable keys skipped)."""
        try:
            keys = jwt.PyJWKSet.from_dict(document).keys
        except jwt.PyJWKSetError as exc:
            raise FetchError(f"{self.url}: {exc}") from None
        self.keys = {key.key_id: key for key in keys}
        self.fetched_at = self.clock()

    async def refresh(self) -> None:
        """Fetch the JWKS once; concurrent callers share one call.  On failure the
        old keys stay (logged), so an outage of the JWKS server is not one of ours."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch())
        pending = self._pending
        try:
            await asyncio.shield(pending)
        finally:
            if pending.done() and self._pending is pending:
                self._pending = None

    async def _fetch(self) -> None:
        self.tried_at = self.clock()
        self.fetches += 1
        try:
            self.load(await fetch_json(self.url, timeout=self.timeout))
        except FetchError as exc:
            logger.warning(f"auth: JWKS fetch failed, keeping {len(self.keys)} cached "
                           f"key(s): {exc}")


class IntrospectionCache:
    """RFC 7662 answers per token (by SHA-256, tokens themselves are not kept):
    an active token's until its ``exp`` (and at most ``ttl``), an inactive one's
    for :data:`INACTIVE_TTL`."""

    def __init__(self, url: str, client_id: str | None, client_secret: str | None,
                 ttl: float, timeout: float = 5.0, clock=time.time) -> None:
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self.clock = clock
        self.calls = 0
        self._answers: dict[bytes, tuple[float, dict]] = {}
        self._auth = None
        if client_id is not None:
            pair = f"{urllib.parse.quote(client_id)}:{urllib.parse.quote(client_secret or '')}"
            self._auth = "Basic " + base64.b64encode(pair.encode()).decode()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def cached(self, token: str) -> dict | None:
        """The kept answer for ``token``, or None when it must be asked."""
        entry = self._answers.get(self._key(token))
        if entry is None:
            return None
        if self.clock() >= entry[0]:
            del self._answers[self._key(token)]
            return None
        return entry[1]

    def keep(self, token: str, answer: dict) -> None:
        now = self.clock()
        until = now + INACTIVE_TTL
        if answer.get("active") is True:
            until = now + self.ttl
            exp = answer.get("exp")
            if isinstance(exp, int | float):
                until = min(until, exp)
        if until <= now:
            return
        if len(self._answers) >= CACHE_SIZE:
            for key in [k for k, (end, _) in self._answers.items() if end <= now]:
                del self._answers[key]
            while len(self._answers) >= CACHE_SIZE:
                del self._answers[next(iter(self._answers))]
        self._answers[self._key(token)] = (until, answer)

    async def introspect(self, token: str) -> dict:
        """The answer for ``token`` (cached, else asked); raises :class:`FetchError`."""
        answer = self.cached(token)
        if answer is not None:
            return answer
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if self._auth is not None:
            headers["authorization"] = self._auth
        body = urllib.parse.urlencode({"token": token,
                                       "token_type_hint": "access_token"}).encode()
        self.calls += 1
        answer = await fetch_json(self.url, data=body, headers=headers, timeout=self.timeout)
        self.keep(token, answer)
        return answer
