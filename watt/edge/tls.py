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
        # No password set: fail, never let OpenSSL prompt for one on the terminal.
        ctx.load_cert_chain(files.cert, files.key, files.password or _no_password)
    except (OSError, ssl.SSLError) as exc:
        raise WattError(f"server.tls: cannot use {files.cert} with {files.key}: "
                        f"{_why(files, exc)}", code="WATT_TLS_INVALID", key="server.tls") from None
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def _no_password() -> str:
    raise WattError("server.tls: the key is encrypted and `password` is not set",
                    code="WATT_TLS_INVALID", key="server.tls.password")


def _why(files: TlsFiles, exc: Exception) -> str:
    """What is wrong, in words: OpenSSL says "PEM lib" for most of it."""
    def has(path: str, marker: str) -> bool:
        try:
            with open(path, "rb") as fh:
                return marker.encode() in fh.read()
        except OSError:
            return False

    if not has(files.cert, "-----BEGIN CERTIFICATE-----"):
        return "`cert` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if not has(files.key, "PRIVATE KEY-----"):
        return "`key` holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)"
    if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
        return "the key is not the certificate's"
    if has(files.key, "ENCRYPTED"):
        return f"the key is encrypted: `password` is {'wrong' if files.password else 'not set'}"
    return str(exc)


def resolve(tls, base_dir: str) -> TlsFiles | None:
    """The config's ``server.tls`` with absolute paths, checked; None without TLS."""
    if tls is None:
        return None
    files = TlsFiles(os.path.join(base_dir, tls.cert), os.path.join(base_dir, tls.key),
                     tls.password)
    for name, path in (("cert", files.cert), ("key", files.key)):
        if not os.path.isfile(path):
            raise WattError(f"server.tls.{name}: {path} does not exist",
                            code="WATT_TLS_INVALID", key=f"server.tls.{name}")
    context(files)  # a wrong key, a bad password or a non-PEM file fails here, at start
    return files
