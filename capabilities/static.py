"""A folder of files served as a website: ``kind: "static"``.

Config keys: ``path`` (the folder to serve; required, like every
application).  Proposed, read from the options when the runtime passes them:
``index`` (list of file names tried for ``/`` and for folders, default
``["index.html"]``) and ``maxAge`` in the config, ``max_age`` in the options
(seconds for ``Cache-Control: public, max-age=N``; default none, so no
``Cache-Control`` header and clients revalidate with the ETag).

Detection: a folder with ``index.html`` and no Python entry file.

What it does: content types from the standard library's built-in table first
(so common files get the same type on every machine, whatever its
``/etc/mime.types`` says), then the machine's table for the rest;
strong ETag and Last-Modified with conditional GET (``If-None-Match`` wins over
``If-Modified-Since``, RFC 9110 13.2.2); single byte ranges (206, ``If-Range``,
416 when unsatisfiable; several ranges get the whole file, which RFC 9110
allows); HEAD; index files and ``/dir`` -> ``/dir/`` redirects; ``404.html``
from the root as the not-found page when it exists.  Refused with 404: ``..``
(also when percent-encoded: the server decodes the path first), any segment
starting with a dot except ``.well-known`` (dotfiles such as ``.env`` or
``.git`` stay private), NUL and backslashes, symlinks that leave the folder,
and anything that is not a regular file.  Files are read in 64 KiB chunks
on a thread, never whole, and the loop stops when the client goes away.

Why not Starlette's ``StaticFiles``: it gets most of this right, but used on
its own it raises ``HTTPException`` for 404/405 (a 500 without a Starlette
app around it), answers a malformed ``Range`` with 400 instead of ignoring
it, and would make this kind depend on Starlette.  This module is the
standard library only, one code path, and loads in a subinterpreter.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
import sys
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote

from watt.capability import Capability, CapabilityError

CHUNK = 64 * 1024
ENTRY_FILES = ("main.py", "app.py", "asgi.py", "wsgi.py", "server.py", "manage.py")
_EXTRA_TYPES = {".woff": "font/woff", ".woff2": "font/woff2", ".map": "application/json"}
_ENCODED_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                  "xz": "application/x-xz", "br": "application/x-brotli",
                  "compress": "application/x-compress"}
_CHARSET = ("text/", "application/javascript", "application/json", "image/svg+xml",
            "application/manifest+json")


def detect(path: str) -> dict | None:
    """A folder with ``index.html`` and none of the Python entry files."""
    if not os.path.isfile(os.path.join(path, "index.html")):
        return None
    if any(os.path.isfile(os.path.join(path, name)) for name in ENTRY_FILES):
        return None
    return {"path": path}


def load(options: dict) -> StaticSite:
    # With `kind: static` on a folder that detect() would not pick, options
    # carry no path: the worker's sys.path[0] is the application's folder.
    root = options.get("path") or sys.path[0]
    if not os.path.isdir(root):
        raise CapabilityError(f"static: {root!r} is not a folder", code="WATT_APP_START_FAILED")
    return StaticSite(root, index=options.get("index") or ("index.html",),
                      max_age=options.get("max_age"))


class StaticSite:
    """The ASGI application that serves one folder."""

    def __init__(self, root: str, *, index=("index.html",), max_age: int | None = None) -> None:
        self.root = os.path.realpath(root)
        self.index = (index,) if isinstance(index, str) else tuple(index)
        self.cache_control = None if max_age is None else f"public, max-age={int(max_age)}"
        self.types = mimetypes.MimeTypes()  # the built-in table only

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _simple(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
            return
        found = self.resolve(scope["path"])
        if isinstance(found, str):  # a folder asked without its trailing slash
            query = scope.get("query_string", b"")
            location = found.encode() + (b"?" + query if query else b"")
            await _simple(send, 301, b"", [(b"location", location)], head=method == "HEAD")
            return
        if found is None:
            await self.not_found(send, method == "HEAD")
            return
        fd, info, real = found
        try:
            await self.serve_file(scope, receive, send, fd, info, self.type_of(real).encode())
        finally:
            os.close(fd)

    def resolve(self, url_path: str):
        """``(fd, stat, real path)`` of the file to serve, a redirect target (str), or
        None (404)."""
        segments = [s for s in url_path.split("/") if s]
        for segment in segments:
            if (segment.startswith(".") and segment != ".well-known") \
                    or "\x00" in segment or "\\" in segment:
                return None
        candidate = os.path.realpath(os.path.join(self.root, *segments))
        if candidate != self.root and not _inside(candidate, self.root):
            return None  # a symlink that leaves the folder
        try:
            info = os.stat(candidate)
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(info.st_mode):
            if not url_path.endswith("/"):
                # Built from the checked segments: "//evil.example" cannot become a
                # protocol-relative redirect.
                return "/" + "/".join(quote(s) for s in segments) + "/"
            for name in self.index:
                opened = _open_regular(os.path.join(candidate, name), self.root)
                if opened is not None:
                    return opened
            return None
        if url_path.endswith("/"):
            return None  # /file.txt/ names no folder
        return _open_regular(candidate, self.root)

    def type_of(self, name: str) -> str:
        guessed, encoding = self.types.guess_type(name, strict=False)
        if guessed is None and encoding is None:  # then the machine's table
            guessed, encoding = mimetypes.guess_type(name, strict=False)
        if encoding is not None:
            guessed = _ENCODED_TYPES.get(encoding, "application/octet-stream")
        guessed = guessed or _EXTRA_TYPES.get(os.path.splitext(name)[1].lower(),
                                              "application/octet-stream")
        if guessed.startswith(_CHARSET):
            guessed += "; charset=utf-8"
        return guessed

    async def not_found(self, send, head: bool) -> None:
        page = _open_regular(os.path.join(self.root, "404.html"), self.root)
        if page is None:
            await _simple(send, 404, b"Not Found\n", head=head)
            return
        fd, info, _ = page
        try:
            await send({"type": "http.response.start", "status": 404, "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(info.st_size).encode())]})
            await _stream(send, None, fd, 0, 0 if head else info.st_size)
        finally:
            os.close(fd)

    async def serve_file(self, scope, receive, send, fd: int, info: os.stat_result,
                         content_type: bytes) -> None:
        etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
        last_modified = formatdate(info.st_mtime, usegmt=True)
        headers = [(b"etag", etag.encode()), (b"last-modified", last_modified.encode())]
        if self.cache_control:
            headers.append((b"cache-control", self.cache_control.encode()))
        request = _headers(scope)
        if _not_modified(request, etag, int(info.st_mtime)):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [(b"content-type", content_type), (b"accept-ranges", b"bytes")]
        size, start, end, status = info.st_size, 0, info.st_size, 200
        wanted = request.get("range")
        if wanted is not None and request.get("if-range", etag) in (etag, last_modified):
            byte_range = parse_range(wanted, size)
            if byte_range == "unsatisfiable":
                headers = [(b"content-range", f"bytes */{size}".encode())]
                await _simple(send, 416, b"Range Not Satisfiable\n", headers,
                              head=scope["method"] == "HEAD")
                return
            if byte_range is not None:
                start, end, status = byte_range[0], byte_range[1] + 1, 206
                headers.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
        headers.append((b"content-length", str(end - start).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        await _stream(send, receive, fd, start, end)


def parse_range(value: str, size: int):
    """One ``bytes=`` range as inclusive ``(first, last)``; None to ignore the header
    (malformed, another unit, several ranges); ``"unsatisfiable"`` for a 416."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) \
            or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # suffix: the last N bytes
        if int(last) == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - int(last)), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        return "unsatisfiable"
    return int(first), min(int(last), size - 1) if last else size - 1


def _not_modified(request: dict, etag: str, mtime: int) -> bool:
    if "if-none-match" in request:
        tags = [t.strip().removeprefix("W/") for t in request["if-none-match"].split(",")]
        return "*" in tags or etag in tags
    since = request.get("if-modified-since")
    if since is None:
        return False
    try:
        return mtime <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError, IndexError):
        return False


def _open_regular(path: str, root: str):
    """``(fd, stat, real path)`` when ``path`` is a regular file inside ``root``; else None.

    O_NONBLOCK: a FIFO swapped in after the check must not hang the worker.
    """
    real = os.path.realpath(path)
    if not _inside(real, root):
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info, real


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip(os.sep) + os.sep)


async def _stream(send, receive, fd: int, start: int, end: int) -> None:
    """Send bytes ``start..end`` of ``fd`` in chunks read on a thread; stop early when
    the client goes away (``receive`` then says ``http.disconnect``)."""
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = loop.create_task(watch()) if receive is not None and end - start > CHUNK else None
    try:
        position = start
        while position < end and not gone.is_set():
            chunk = await loop.run_in_executor(None, os.pread, fd, min(CHUNK, end - position),
                                               position)
            if not chunk:  # the file shrank under us: end the body where it ends
                break
            position += len(chunk)
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": position < end})
        if position < end or start == end:  # cut short, or nothing to send
            await send({"type": "http.response.body", "body": b""})
    finally:
        if watcher is not None:
            watcher.cancel()


async def _simple(send, status: int, body: bytes, headers=(), head: bool = False) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _headers(scope: dict) -> dict:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def needs_restart(changed: list[str]) -> bool:
    """Files are read from disk on every request: an edit is served at once, no
    restart (``watt dev``); only a Python file (a misdetected folder) would need one."""
    return any(path.endswith(".py") for path in changed)


capability = Capability(
    name="static",
    loader="capabilities.static:load",
    detect=detect,
    isolation="auto",
    priority=5,
    description="a folder of static files (index.html, no Python entry file)",
    needs_restart=needs_restart,
)
