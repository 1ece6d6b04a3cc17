"""A WebSocket upgrade's bearer token from a query parameter or a subprotocol.

Browsers cannot set ``Authorization`` on a WebSocket, so a route may accept the
token where a browser can put it (config ``auth.routes[].websocket``; off by
default, and never for plain HTTP requests): a query parameter
(``wss://host/ws?access_token=<token>``) or a ``Sec-WebSocket-Protocol`` entry
that starts with a prefix (``new WebSocket(url, ["chat", "bearer." + token])``).
Either is taken out of what the application receives — the query string and the
subprotocols it sees, and so its logs and spans, never hold the token.  No I/O.
"""

from __future__ import annotations

from urllib.parse import unquote_plus


def take_token(scope: dict, req, cfg) -> str | None:
    """The token the upgrade carries where ``cfg`` (``WebSocketTokenConfig``) says,
    removed from ``scope`` (the one forwarded) and ``req``; None when there is none."""
    token = None
    if cfg.query is not None:
        query = scope.get("query_string") or b""
        if query:
            kept = []
            for part in query.split(b"&"):
                name, _, value = part.decode("latin-1").partition("=")
                if unquote_plus(name) == cfg.query:
                    token = token or unquote_plus(value)
                else:
                    kept.append(part)
            scope["query_string"] = req.query = b"&".join(kept)
    prefix = cfg.subprotocol
    if prefix is not None:
        offered = list(scope.get("subprotocols") or ())
        carrying = [entry for entry in offered if entry.startswith(prefix)]
        if carrying:
            token = token or carrying[0][len(prefix):]
            scope["subprotocols"] = [entry for entry in offered if entry not in carrying]
            req.headers[:] = _without_protocols(req.headers, prefix)
    return token or None


def _without_protocols(headers: list, prefix: str) -> list:
    """``headers`` with the ``Sec-WebSocket-Protocol`` entries starting with ``prefix``
    dropped (and the header itself when none is left)."""
    out = []
    start = prefix.encode("latin-1")
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            entries = [e.strip() for e in value.split(b",")]
            value = b", ".join(e for e in entries if e and not e.startswith(start))
            if not value:
                continue
        out.append((name, value))
    return out
