"""A complete HTTP response as a value: what ``inject`` and ``watt.mesh.fetch`` return.

Shared by both sides (standard library only)."""

from __future__ import annotations

import json


class Response:
    """``status``, ``headers`` (``(name, value)`` pairs of bytes) and the whole ``body``."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status} {len(self.body)} bytes>"


def close_fds(fds) -> None:
    """Close each fd, ignoring those already closed."""
    import os

    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
