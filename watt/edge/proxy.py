"""What every request gets at the entrypoint, pipeline or not: :class:`Edge`.

Incoming headers that only Watt may set are dropped (``x-watt-*`` and the
authenticated-user header, ``server.userHeader``), a request id is added when
the client sent none, and the ``x-forwarded-*`` (and ``forwarded``) headers
are believed only when the peer is one of ``server.trustedProxies``: then the
client address and scheme the application sees come from them (as uvicorn's
``--forwarded-allow-ips`` does); from anyone else they are dropped and
replaced with Watt's own view of the hop.
"""

from __future__ import annotations

import ipaddress
import itertools
import os

# Request ids: a random prefix per process and a counter, 32 hex digits like a
# UUID, unique without a syscall per request.
_ID_PREFIX = os.urandom(10).hex().encode()
_ID_COUNTER = itertools.count(1)
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class TrustedProxies:
    """Which peer addresses may speak for the client: IPs, CIDR networks, or ``*``."""

    __slots__ = ("_all", "_cache", "_networks")

    def __init__(self, entries) -> None:
        self._all = "*" in entries
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self._cache: dict[str, bool] = {}

    def __call__(self, host: str) -> bool:
        if self._all:
            return True
        known = self._cache.get(host)
        if known is None:
            try:
                addr = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                known = any(addr in net for net in self._networks)
            if len(self._cache) >= 4096:
                self._cache.clear()  # bounded: a scan of addresses cannot grow it
            self._cache[host] = known
        return known


def _client_from(chain: bytes, trusted: TrustedProxies) -> str | None:
    """The client in an ``x-forwarded-for`` chain: the right-most address that is not
    a trusted proxy (the left-most when all are)."""
    hosts = [h.strip() for h in chain.decode("latin-1").split(",") if h.strip()]
    for host in reversed(hosts):
        if not trusted(host):
            return host
    return hosts[0] if hosts else None


class Edge:
    """The entrypoint's per-request rules, and its stage pipeline (None when empty)."""

    __slots__ = ("pipeline", "trusted", "user_header")

    def __init__(self, user_header: str = "x-watt-user", trusted: list | None = None,
                 pipeline=None) -> None:
        self.user_header = user_header.lower().encode("latin-1")
        self.trusted = TrustedProxies(trusted) if trusted else None
        self.pipeline = pipeline

    def headers(self, scope: dict) -> list:
        """The headers the entrypoint application gets; ``scope``'s ``client`` and
        ``scheme`` are rewritten when a trusted proxy vouches for them."""
        headers = []
        request_id = host = forwarded = None
        user = self.user_header
        client = scope.get("client")
        peer = str(client[0]) if client else None
        vouched = self.trusted is not None and peer is not None and self.trusted(peer)
        for name, value in scope["headers"]:
            if name.startswith(b"x-"):
                if name.startswith(b"x-watt-") or name == user:
                    continue
                if name.startswith(b"x-forwarded-"):
                    if vouched:
                        if forwarded is None:
                            forwarded = {}
                        forwarded[name] = value  # the last one wins, as for a proxy
                    continue  # from anyone else: Watt's own view replaces them
                if name == b"x-request-id":
                    request_id = value
            elif name == b"host":
                host = value
            elif name == user or (name == b"forwarded" and not vouched):
                continue
            headers.append((name, value))
        if request_id is None:
            headers.append((b"x-request-id", b"%s%012x" % (_ID_PREFIX, next(_ID_COUNTER))))
        chain = forwarded.get(b"x-forwarded-for") if forwarded else None
        proto = forwarded.get(b"x-forwarded-proto") if forwarded else None
        if forwarded:
            if chain:
                real = _client_from(chain, self.trusted)
                if real is not None:
                    scope["client"] = (real, 0)
            if proto:
                scheme = proto.split(b",")[-1].strip().decode("latin-1").lower()
                if scheme in ("http", "https"):
                    ws = scope.get("type") == "websocket"
                    scope["scheme"] = ("wss" if scheme == "https" else "ws") if ws else scheme
            for name, value in forwarded.items():
                if name not in (b"x-forwarded-for", b"x-forwarded-proto"):
                    headers.append((name, value))
        if peer is not None:
            ip = peer.encode()
            headers.append((b"x-forwarded-for", chain + b", " + ip if chain else ip))
        elif chain:
            headers.append((b"x-forwarded-for", chain))
        headers.append((b"x-forwarded-proto", proto if proto else
                        _SCHEMES.get(scope.get("scheme", "http"), "http").encode()))
        if host is not None and not (forwarded and b"x-forwarded-host" in forwarded):
            headers.append((b"x-forwarded-host", host))
        return headers


#: The rules with nothing configured (what ``watt.entrypoint.forward`` uses by default).
DEFAULT = Edge()


def edge_headers(scope: dict) -> list:
    """:meth:`Edge.headers` with the default rules."""
    return DEFAULT.headers(scope)
