"""``server.tls``: HTTPS at the entrypoint.

:func:`resolve` checks the files once at start (``WATT_TLS_INVALID`` naming
the file, before any port is bound) and gives their absolute paths; each
engine then terminates TLS its own way: the ``watt`` engine with an asyncio
:class:`ssl.SSLContext` from :func:`context` (ALPN ``http/1.1``: it does not
speak HTTP/2), hypercorn from its ``certfile``/``keyfile`` (ALPN ``h2`` and
``http/1.1``), granian from its ``ssl_cert``/``ssl_key`` (HTTP/2 via ALPN too).
"""

from __future__ import annotations

import os
import ssl
from typing import NamedTuple

from ..errors import WattError


class TlsFiles(NamedTuple):
    cert: str
    key: str
    password: str | None


def context(files: TlsFiles, alpn: tuple = ("http/1.1",)) -> ssl.SSLContext:
    """A server context for these files (TLS 1.2 at least)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(files.cert, files.key, files.password)
    except (OSError, ssl.SSLError) as exc:
        raise WattError(f"server.tls: cannot use {files.cert} with {files.key}: {exc}",
                        code="WATT_TLS_INVALID", key="server.tls") from None
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def resolve(tls, base_dir: str) -> TlsFiles | None:
    """The config's ``server.tls`` with absolute paths, checked; None without TLS."""
    if tls is None:
        return None
    files = TlsFiles(os.path.join(base_dir, tls.cert), os.path.join(base_dir, tls.key),
                     tls.password)
    for path in (files.cert, files.key):
        if not os.path.isfile(path):
            raise WattError(f"server.tls: {path} does not exist", code="WATT_TLS_INVALID",
                            key="server.tls")
    context(files)  # a wrong key, a bad password or a non-PEM file fails here, at start
    return files
