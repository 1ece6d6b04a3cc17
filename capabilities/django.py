"""Django projects: ``kind: "django"``, over ASGI or through the WSGI bridge.

Config keys: ``path`` (the folder with ``manage.py``), ``threads`` (WSGI
mode only: threads that run Django in each worker, default 10), and the
common ``workers``, ``isolation``, ``env``.  The settings module comes from
``manage.py``; an ``env`` entry ``DJANGO_SETTINGS_MODULE`` overrides it.

Detection (reads files, never imports them): a folder with ``manage.py``;
the settings module is the default ``manage.py`` gives
``DJANGO_SETTINGS_MODULE`` (``os.environ.setdefault(...,
"mysite.settings")``), else the one ``<package>/settings.py`` of the folder.
Options: ``{"settings": "mysite.settings", "asgi": bool}`` -- ASGI when
``mysite/asgi.py`` exists, WSGI (``get_wsgi_application()`` on the thread
pool of ``capabilities/wsgi.py``) otherwise.

Static files: once ``STATIC_ROOT`` exists (after ``build``, that is
``manage.py collectstatic``), GET and HEAD under ``STATIC_URL`` are served
from it by the ``static`` capability's ``StaticSite``; everything else, and
every static path while the folder does not exist, goes to Django.

Django, asgiref and sqlparse load in a subinterpreter (CPython 3.13.0,
Django 6.1), so the isolation is ``auto``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from watt.capability import Capability, CapabilityError, accept_lifespan

from .static import StaticSite
from .wsgi import DEFAULT_THREADS, WSGIBridge

__all__ = ["DjangoSite", "build", "detect", "load", "settings_module"]

_SETTINGS_DEFAULT = re.compile(
    r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""")
SETTINGS_ENV = "DJANGO_SETTINGS_MODULE"


# -- detection (main interpreter: read files, never import) ---------------------------
def settings_module(path: str) -> str | None:
    """The settings module ``manage.py`` defaults to, else the only ``*/settings.py``."""
    manage = os.path.join(path, "manage.py")
    with open(manage, encoding="utf-8", errors="replace") as fh:
        match = _SETTINGS_DEFAULT.search(fh.read())
    if match:
        return match.group(1)
    found = sorted(name for name in os.listdir(path)
                   if os.path.isfile(os.path.join(path, name, "settings.py")))
    return f"{found[0]}.settings" if len(found) == 1 else None


def detect(path: str) -> dict | None:
    if not os.path.isfile(os.path.join(path, "manage.py")):
        return None
    settings = settings_module(path)
    if settings is None:
        return {}  # a Django folder; load() says what is missing
    package = settings.rpartition(".")[0]
    asgi = bool(package) and os.path.isfile(
        os.path.join(path, *package.split("."), "asgi.py"))
    return {"settings": settings, "asgi": asgi}


# -- build (main side, or the CLI) ------------------------------------------------------
def build(path: str, options: dict | None = None) -> tuple[int, str]:
    """Run ``manage.py collectstatic --noinput`` in ``path``: ``(exit status, output)``.

    A subprocess, so Django's settings never load in the caller.  ``options``
    may carry ``settings`` and ``env`` (the application's environment).
    """
    options = options or {}
    env = dict(os.environ, **(options.get("env") or {}))
    if options.get("settings"):
        env.setdefault(SETTINGS_ENV, options["settings"])
    done = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"],
                          cwd=path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    return done.returncode, done.stdout


# -- loading (inside the worker) -------------------------------------------------------
def load(options: dict) -> DjangoSite:
    """Set up Django with the project's settings and return its ASGI application."""
    settings = options.get("settings")
    if not settings and SETTINGS_ENV not in os.environ:
        raise CapabilityError(
            "no Django settings module found: manage.py sets no DJANGO_SETTINGS_MODULE "
            "default and the folder has no single <package>/settings.py; set "
            "DJANGO_SETTINGS_MODULE in the application's `env`",
            code="WATT_CAPABILITY_UNDETECTED")
    if settings:
        _setdefault_env(SETTINGS_ENV, settings)
    process_tz = os.environ.get("TZ")  # this mapping was copied from the process's
    if options.get("asgi", True):
        from django.core.asgi import get_asgi_application

        inner, bridge = get_asgi_application(), None
    else:
        from django.core.wsgi import get_wsgi_application

        inner = bridge = WSGIBridge(get_wsgi_application(),
                                    options.get("threads") or DEFAULT_THREADS)
    from django.conf import settings as django_settings

    _restore_process_time_zone(process_tz)
    return DjangoSite(inner, bridge, django_settings.STATIC_URL, django_settings.STATIC_ROOT)


def _setdefault_env(key: str, value: str) -> None:
    """``os.environ.setdefault`` for this interpreter only.

    ``os.environ[key] = ...`` also calls ``putenv``, which would change the
    environment of the whole process, so of every other subinterpreter
    worker (two Django projects in one runtime).  Django reads the mapping.
    """
    if key in os.environ:
        return
    os.environ._data[os.environ.encodekey(key)] = os.environ.encodevalue(value)


def _restore_process_time_zone(before: str | None) -> None:
    """Undo, for the process, the ``TZ`` that Django's settings just set.

    Django sets ``os.environ["TZ"] = TIME_ZONE`` and calls ``time.tzset()``;
    both are process-wide, so from a subinterpreter they would change the local
    time of every other application and of Watt's own logs.  The worker's
    ``os.environ`` keeps Django's value; the C library's is put back.  In a
    process of its own, Django keeps its usual behaviour.
    """
    try:
        import _interpreters

        if int(_interpreters.get_current()[0]) == 0:
            return
    except Exception:  # noqa: BLE001 - no subinterpreters: nothing shared
        return
    import time

    if before is None:
        os.unsetenv("TZ")
    else:
        os.putenv("TZ", before)
    time.tzset()


class DjangoSite:
    """Django's ASGI application (or the WSGI bridge around Django), with
    ``STATIC_URL`` served from ``STATIC_ROOT`` once that folder exists."""

    def __init__(self, inner, bridge: WSGIBridge | None, static_url: str | None,
                 static_root) -> None:
        self.inner = inner
        self.bridge = bridge
        prefix = static_url or ""
        # Only a path on this site ("/static/"); a CDN URL is not ours to serve.
        self.static_prefix = prefix if prefix.startswith("/") and prefix != "/" else None
        if self.static_prefix and not self.static_prefix.endswith("/"):
            self.static_prefix += "/"
        self.static_root = os.fspath(static_root) if static_root else None
        self._static: StaticSite | None = None

    def static_site(self) -> StaticSite | None:
        """The site for STATIC_ROOT, made once the folder exists (collectstatic
        may run after the worker started)."""
        if self._static is None and self.static_root and os.path.isdir(self.static_root):
            self._static = StaticSite(self.static_root)
        return self._static

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":  # Django's handler raises on websocket scopes
            await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        if self.static_prefix and path.startswith(self.static_prefix) \
                and scope["method"] in ("GET", "HEAD"):
            site = self.static_site()
            if site is not None:
                rest = path[len(self.static_prefix) - 1:]
                await site(dict(scope, path=rest, raw_path=rest.encode()), receive, send)
                return
        await self.inner(scope, receive, send)

    async def _lifespan(self, scope: dict, receive, send) -> None:
        if self.bridge is not None:  # its shut-down stops the thread pool
            await self.bridge(scope, receive, send)
            return
        await accept_lifespan(receive, send)


capability = Capability(
    name="django",
    loader="capabilities.django:load",
    detect=detect,
    isolation="auto",
    priority=30,
    description="Django project (manage.py): ASGI when <project>/asgi.py exists, else WSGI",
    build=build,
)
