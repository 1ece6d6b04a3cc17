"""``watt create``: scaffold a project, or add an application to one.

A new project is a ``watt.json`` with two applications of the chosen kind:
the entrypoint (``web``) whose ``/`` calls the service (``api``) at
``http://api.plt.local/hello`` over the mesh, a pytest test that runs both
through the ``watt_runtime`` fixture, a README and, when the kind needs a
framework, a ``requirements.txt``.  ``watt start`` runs it as generated.

The templates are plain strings with ``__APP__`` / ``__SERVICE__`` markers
(not ``str.format``: the code in them is full of braces).  Nothing here
starts a runtime; every refusal is a :class:`WattError` with a
``WATT_CREATE_*`` code, and the CLI turns it into an exit code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import WattError

__all__ = ["KINDS", "add_application", "create_project"]

ENTRY_ID = "web"
SERVICE_ID = "api"


@dataclass(frozen=True)
class _Kind:
    entry: str  # main.py of the entrypoint: "/" calls __SERVICE__ over the mesh
    service: str  # main.py of a service: "/hello" answers as __APP__
    requirement: str | None  # the line requirements.txt needs, if any


# -- templates -------------------------------------------------------------------------
_ASGI_ENTRY = '''\
"""__APP__: the entrypoint, a plain ASGI application (no framework).

GET /  calls the __SERVICE__ application at http://__SERVICE__.plt.local/hello
       and returns what it said.
"""

import json

import watt.mesh


async def app(scope, receive, send):
    if scope["type"] != "http":  # lifespan: nothing to start or stop
        return
    if scope["path"] == "/":
        # No network: Watt answers *.plt.local over an in-memory channel.
        reply = await watt.mesh.fetch("http://__SERVICE__.plt.local/hello")
        status, body = 200, {"app": "__APP__", "service": reply.json()}
    else:
        status, body = 404, {"error": "not found"}
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
'''

_ASGI_SERVICE = '''\
"""__APP__: a service, reached by the other applications at http://__APP__.plt.local."""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":  # lifespan: nothing to start or stop
        return
    if scope["path"] == "/hello":
        status, body = 200, {"app": "__APP__", "message": "Hello from __APP__!"}
    else:
        status, body = 404, {"error": "not found"}
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
'''

_STARLETTE_ENTRY = '''\
"""__APP__: the entrypoint (Starlette).

GET /  calls the __SERVICE__ application at http://__SERVICE__.plt.local/hello
       and returns what it said.
"""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import watt.mesh


async def home(request):
    # No network: Watt answers *.plt.local over an in-memory channel
    # (httpx, aiohttp and requests reach it too, with no code change).
    reply = await watt.mesh.fetch("http://__SERVICE__.plt.local/hello")
    return JSONResponse({"app": "__APP__", "service": reply.json()})


app = Starlette(routes=[Route("/", home)])
'''

_STARLETTE_SERVICE = '''\
"""__APP__: a service (Starlette), reached by the others at http://__APP__.plt.local."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"app": "__APP__", "message": "Hello from __APP__!"})


app = Starlette(routes=[Route("/hello", hello)])
'''

_FASTAPI_ENTRY = '''\
"""__APP__: the entrypoint (FastAPI; Watt runs it in a child process).

GET /  calls the __SERVICE__ application at http://__SERVICE__.plt.local/hello
       and returns what it said.
"""

from fastapi import FastAPI

import watt.mesh

app = FastAPI()


@app.get("/")
async def home():
    # No network: Watt answers *.plt.local over an in-memory channel
    # (httpx, aiohttp and requests reach it too, with no code change).
    reply = await watt.mesh.fetch("http://__SERVICE__.plt.local/hello")
    return {"app": "__APP__", "service": reply.json()}
'''

_FASTAPI_SERVICE = '''\
"""__APP__: a service (FastAPI), reached by the others at http://__APP__.plt.local."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello():
    return {"app": "__APP__", "message": "Hello from __APP__!"}
'''

_FLASK_ENTRY = '''\
"""__APP__: the entrypoint (Flask).

GET /  calls the __SERVICE__ application at http://__SERVICE__.plt.local/hello
       and returns what it said.
"""

import json
import urllib.request

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def home():
    # No network: Watt answers *.plt.local over an in-memory channel, whether
    # the call goes through urllib, requests, httpx or watt.mesh.fetch_sync.
    with urllib.request.urlopen("http://__SERVICE__.plt.local/hello", timeout=30) as response:
        service = json.load(response)
    return jsonify(app="__APP__", service=service)
'''

_FLASK_SERVICE = '''\
"""__APP__: a service (Flask), reached by the others at http://__APP__.plt.local."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify(app="__APP__", message="Hello from __APP__!")
'''

_WSGI_ENTRY = '''\
"""__APP__: the entrypoint, a plain WSGI application (no framework).

GET /  calls the __SERVICE__ application at http://__SERVICE__.plt.local/hello
       and returns what it said.
"""

import json
import urllib.request


def app(environ, start_response):
    if environ["PATH_INFO"] != "/":
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']
    # No network: Watt answers *.plt.local over an in-memory channel.
    with urllib.request.urlopen("http://__SERVICE__.plt.local/hello", timeout=30) as response:
        service = json.load(response)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"app": "__APP__", "service": service}).encode()]
'''

_WSGI_SERVICE = '''\
"""__APP__: a service (WSGI), reached by the others at http://__APP__.plt.local."""

import json


def app(environ, start_response):
    if environ["PATH_INFO"] != "/hello":
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"app": "__APP__", "message": "Hello from __APP__!"}).encode()]
'''

#: The kinds ``watt create --kind`` knows, each one a capability of the same name.
KINDS: dict[str, _Kind] = {
    "asgi": _Kind(_ASGI_ENTRY, _ASGI_SERVICE, None),
    "starlette": _Kind(_STARLETTE_ENTRY, _STARLETTE_SERVICE, "starlette>=0.40"),
    "fastapi": _Kind(_FASTAPI_ENTRY, _FASTAPI_SERVICE, "fastapi>=0.110"),
    "flask": _Kind(_FLASK_ENTRY, _FLASK_SERVICE, "flask>=3.0"),
    "wsgi": _Kind(_WSGI_ENTRY, _WSGI_SERVICE, None),
}

_TEST = '''\
"""The whole project in Watt, on a free port, through the watt_runtime fixture
(a pytest plugin installed with Watt: nothing to configure)."""

import json
import urllib.request
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "watt.json"


def test_the_entrypoint_calls_the_service_over_the_mesh(watt_runtime):
    rt = watt_runtime(CONFIG)
    with urllib.request.urlopen(rt.url + "/", timeout=30) as response:
        assert response.status == 200
        body = json.load(response)
    assert body["app"] == "__APP__"
    assert body["service"] == {"app": "__SERVICE__", "message": "Hello from __SERVICE__!"}

    # Any application answers over its channel, entrypoint or not.
    reply = rt.inject("__SERVICE__", "GET", "/hello")
    assert reply.status == 200
    assert reply.json()["app"] == "__SERVICE__"
'''

_README = '''\
# __NAME__

A Watt project: several Python web applications in one
process, each in its own subinterpreter (or child process), behind one
entrypoint.

| application | folder | kind | role |
| --- | --- | --- | --- |
| `__APP__` | `__APP__/` | __KIND__ | the entrypoint: `GET /` calls `__SERVICE__` |
| `__SERVICE__` | `__SERVICE__/` | __KIND__ | a service at `http://__SERVICE__.plt.local` |

## Run it

```sh
__INSTALL__watt start          # serves http://127.0.0.1:3042 (watt start -p 0 picks a free port)
curl http://127.0.0.1:3042/
```

`watt dev` does the same and restarts an application when a file in its
folder changes (the others keep serving; a syntax error is shown and the old
code keeps serving until you fix it).

## Test it

```sh
pytest
```

`tests/test_project.py` starts the whole project with the `watt_runtime`
fixture, on a free port, and calls it.

## Grow it

```sh
watt create --add billing --kind __KIND__   # a new folder billing/, listed in watt.json
```

The configuration is `watt.json`; every key is described in Watt's
`docs/configuration.md`.
'''

_GITIGNORE = "__pycache__/\n*.pyc\n.venv/\n"


# -- the operations -----------------------------------------------------------------------
def create_project(directory: str | os.PathLike, *, kind: str = "starlette",
                   force: bool = False) -> list[Path]:
    """Write a new project into ``directory`` (created if needed) and return the
    files written.  Refuses a non-empty folder unless ``force`` (then the
    generated files are written over, except an existing README.md or
    .gitignore; nothing else is touched)."""
    spec = _kind(kind)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise WattError(f"{root} exists and is not a folder", code="WATT_CREATE_NOT_EMPTY")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise WattError(f"{root.resolve()} is not empty: choose a new folder, or pass --force "
                        "to write the project's files into it anyway",
                        code="WATT_CREATE_NOT_EMPTY")
    name = root.resolve().name or "watt-project"
    config = {"entrypoint": ENTRY_ID,
              "server": {"hostname": "127.0.0.1", "port": 3042},
              "applications": [_entry(ENTRY_ID, kind), _entry(SERVICE_ID, kind)]}
    install = "pip install -r requirements.txt\n" if spec.requirement else ""
    files = {
        "watt.json": json.dumps(config, indent=2) + "\n",
        f"{ENTRY_ID}/main.py": _fill(spec.entry, ENTRY_ID, SERVICE_ID),
        f"{SERVICE_ID}/main.py": _fill(spec.service, SERVICE_ID, SERVICE_ID),
        "tests/test_project.py": _fill(_TEST, ENTRY_ID, SERVICE_ID),
        "README.md": _fill(_README, ENTRY_ID, SERVICE_ID).replace("__NAME__", name)
        .replace("__KIND__", kind).replace("__INSTALL__", install),
        ".gitignore": _GITIGNORE,
    }
    if spec.requirement:
        files["requirements.txt"] = _requirements([spec.requirement])
    for keep in ("README.md", ".gitignore"):  # --force: the user's own stay
        if (root / keep).exists():
            del files[keep]
    return _write(root, files)


def add_application(directory: str | os.PathLike, app_id: str, *, kind: str = "starlette",
                    force: bool = False) -> list[Path]:
    """Add a service application ``app_id`` (folder ``<directory>/<app_id>``) to the
    project whose ``watt.json`` or ``watt.toml`` is in ``directory``; return the files
    written or changed.  Refuses an id the configuration already has."""
    from .config import ID_PATTERN, load_config

    spec = _kind(kind)
    if not re.match(ID_PATTERN, app_id):
        raise WattError(f"{app_id!r} is not a valid application id: lowercase letters, digits "
                        "and '-' inside (it becomes the host name <id>.plt.local)",
                        code="WATT_CREATE_BAD_ID")
    root = Path(directory)
    config_file = next((root / n for n in ("watt.json", "watt.toml") if (root / n).is_file()),
                       None)
    if config_file is None:
        raise WattError(f"no watt.json or watt.toml in {root.resolve()}: run `watt create` "
                        "first, or give the project folder", code="WATT_CREATE_NO_CONFIG")
    loaded = load_config(str(config_file))
    known = [app.id for app in loaded.applications]
    if app_id in known:
        raise WattError(f"the project already has an application {app_id!r} (it has: "
                        f"{', '.join(known)}); choose another id",
                        code="WATT_CREATE_APP_EXISTS", file=str(config_file))
    folder = root / app_id
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not force:
        raise WattError(f"{folder} already exists and is not empty: choose another id, or "
                        "pass --force to write into it", code="WATT_CREATE_NOT_EMPTY")
    autoloaded = loaded.config.autoload is not None and \
        Path(loaded.base_dir, loaded.config.autoload.path).resolve() == root.resolve()
    existed = folder.exists()
    written = _write(root, {f"{app_id}/main.py": _fill(spec.service, app_id, app_id)})
    if not autoloaded:  # an autoload folder picks the new folder up by itself
        # A lone application is the entrypoint without saying so; with two, the
        # file must name it.
        entrypoint = None if loaded.config.entrypoint else loaded.entrypoint
        try:
            _append_application(config_file, _entry(app_id, kind), entrypoint)
        except WattError:
            if not existed:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        written.append(config_file)
    if spec.requirement:
        requirements = root / "requirements.txt"
        lines = requirements.read_text().splitlines() if requirements.is_file() else []
        names = {_requirement_name(line) for line in lines
                 if line.strip() and not line.lstrip().startswith("#")}
        if _requirement_name(spec.requirement) not in names:
            requirements.write_text(_requirements([spec.requirement]) if not lines else
                                    "\n".join([*lines, spec.requirement]) + "\n")
            written.append(requirements)
    return written


# -- helpers ----------------------------------------------------------------------------
def _kind(kind: str) -> _Kind:
    spec = KINDS.get(kind)
    if spec is None:
        raise WattError(f"no template for kind {kind!r} (choose one of: {', '.join(KINDS)})",
                        code="WATT_CREATE_UNKNOWN_KIND")
    return spec


def _entry(app_id: str, kind: str) -> dict:
    return {"id": app_id, "path": app_id, "kind": kind}


def _fill(template: str, app_id: str, service_id: str) -> str:
    return template.replace("__APP__", app_id).replace("__SERVICE__", service_id)


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements(lines: list[str]) -> str:
    return "# Watt itself is installed separately (pip install watt).\n" + "\n".join(lines) + "\n"


def _write(root: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def _append_application(config_file: Path, entry: dict, entrypoint: str | None) -> None:
    """Add ``entry`` to the file's ``applications`` (and ``entrypoint`` when given),
    keeping the rest of the file as written; a result that no longer loads is
    rolled back (never a broken config)."""
    from .config import load_config

    original = config_file.read_text(encoding="utf-8")
    if config_file.suffix == ".json":
        data = json.loads(original)
        if entrypoint:
            data = {"entrypoint": entrypoint, **data}
        data.setdefault("applications", []).append(entry)
        text = json.dumps(data, indent=2) + "\n"
    else:  # TOML: append an array-of-tables entry (no TOML writer in the standard library)
        text = original.rstrip("\n") + "\n\n[[applications]]\n" + "".join(
            f"{key} = {json.dumps(value)}\n" for key, value in entry.items())
        if entrypoint:  # a top-level key: before every table
            text = f"entrypoint = {json.dumps(entrypoint)}\n" + text
    config_file.write_text(text, encoding="utf-8")
    try:
        load_config(str(config_file))
    except WattError as exc:
        config_file.write_text(original, encoding="utf-8")
        raise WattError(f"could not add {entry['id']!r} to {config_file} automatically "
                        f"({exc.code}: {exc.message}); add it to `applications` by hand",
                        code="WATT_CREATE_CONFIG_EDIT", file=str(config_file)) from None
