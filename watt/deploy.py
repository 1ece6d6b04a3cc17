"""``watt build --container``: a self-contained Docker build context for a project.

What is written (``--out``, default ``dist/container``)::

    Dockerfile          two stages on python:3.13-slim: `build` makes /opt/venv with
                        Watt and every application's locked dependencies, `runtime`
                        copies it and the project, runs as a non-root user
    .dockerignore       caches, virtualenvs, .env files, VCS folders
    app/                the project (the config file's folder), minus what is ignored
    app/watt.deploy.json  the config as the container runs it (see deploy_config)
    requirements/       one requirements file per application, from its lock file
    watt-src/           Watt's own source, when it is not installed from an index

The generation is pure apart from reading the project and writing ``out``: the
tests parse the Dockerfile instead of building it.  The Kubernetes manifests
are in :mod:`watt.deploy_k8s`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tomllib
from pathlib import Path

import msgspec
from dotenv import dotenv_values

from . import __version__
from .config import _PLACEHOLDER, LoadedConfig, load_config
from .config_files import find_file, read_file
from .errors import WattError
from .management.endpoints import SECRET_NAME

BASE_IMAGE = "python:3.13-slim"
#: Uid of the image's user: not root, and not a uid a host user is likely to have.
USER_ID = 10001
DEPLOY_CONFIG = "watt.deploy.json"
#: Left out of the build context (and listed in .dockerignore).
IGNORED = [".git", ".hg", ".svn", "**/__pycache__", "**/*.pyc", ".venv", "venv", "**/.venv",
           "**/node_modules", ".env", "**/.env", "**/.env.*", ".pytest_cache", ".ruff_cache",
           ".mypy_cache", "dist", "build", "*.egg-info", "**/.DS_Store"]


class BuildInput(msgspec.Struct):
    """A config loaded for a build: ``plain`` are the placeholder variables known now
    that are not secrets (baked in as defaults the environment still overrides),
    ``secrets`` the names left for the platform to supply at start."""

    loaded: LoadedConfig
    plain: dict[str, str]
    secrets: list[str]


def load_for_build(source: str | os.PathLike) -> BuildInput:
    """Load and validate the config as ``watt start`` would, except that a secret's
    placeholder (``${DB_PASSWORD}``, names as ``watt env`` masks them) need not be
    set: its value belongs to the running platform, never to an image or manifest."""
    file = find_file(Path(source))
    names: set[str] = set()

    def collect(value) -> None:
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            for item in value:
                collect(item)
        elif isinstance(value, str):
            names.update(m[1] or m[2] for m in _PLACEHOLDER.finditer(value))

    collect(read_file(file)[0])
    dotenv = Path(file).parent / ".env"
    environ = {k: v for k, v in dotenv_values(dotenv).items() if v is not None} \
        if dotenv.is_file() else {}
    environ.update(os.environ)
    secrets = sorted(n for n in names if SECRET_NAME.search(n))
    plain = {n: environ[n] for n in sorted(names) if n not in secrets and n in environ}
    stand_in = {n: "x" * 32 for n in secrets if n not in environ}  # validation only
    return BuildInput(load_config(file, env={**environ, **stand_in}), plain, secrets)


def project_root(loaded: LoadedConfig) -> Path:
    """The config file's folder."""
    return Path(loaded.file).parent if loaded.file else Path(loaded.base_dir)


def image_root(loaded: LoadedConfig) -> Path:
    """The folder /app stands for: the config's folder, or the nearest one that also
    holds every application's (an application beside the project, ``../shared``)."""
    folders = [str(project_root(loaded).resolve())] + \
        [str(Path(a.path).resolve()) for a in loaded.applications]
    return Path(os.path.commonpath(folders))


def config_in_image(loaded: LoadedConfig) -> str:
    """Where ``watt.deploy.json`` is inside the image (beside the original config)."""
    relative = project_root(loaded).resolve().relative_to(image_root(loaded)).as_posix()
    return "/app/" + (f"{relative}/" if relative != "." else "") + DEPLOY_CONFIG


def deploy_config(loaded: LoadedConfig) -> dict:
    """The config a deployed instance runs: the user's file as written, placeholders
    kept (the container's environment fills them at start, secrets included), with
    only what a container needs changed: every address bound on 0.0.0.0 and the
    /ready, /live server on, so the platform can probe it."""
    raw = read_file(find_file(Path(loaded.file)))[0] if loaded.file else \
        msgspec.to_builtins(loaded.config)
    raw = dict(raw)
    raw.pop("$schema", None)
    raw["server"] = {**raw.get("server", {}), "hostname": "0.0.0.0"}
    raw["metrics"] = {**raw.get("metrics", {}), "enabled": True, "hostname": "0.0.0.0"}
    return raw


def requirements(app_dir: Path) -> tuple[str, list[str]] | None:
    """How an application declares its dependencies: ``(kind, lines)`` where kind is
    the file it came from and lines the requirements (pinned when a lock says so),
    or None when it declares none.  A lock wins over pyproject.toml, which wins
    over requirements.txt."""
    for lock in ("uv.lock", "poetry.lock"):
        if (app_dir / lock).is_file():
            return lock, _locked(app_dir / lock)
    pyproject = app_dir / "pyproject.toml"
    if pyproject.is_file():
        data = _toml(pyproject)
        deps = list(data.get("project", {}).get("dependencies", []))
        poetry = data.get("tool", {}).get("poetry", {}).get("dependencies", {})
        deps += [f"{name}{_poetry_spec(spec)}" for name, spec in poetry.items()
                 if name.lower() != "python"]
        return "pyproject.toml", deps
    if (app_dir / "requirements.txt").is_file():
        return "requirements.txt", [line for line in _lines(app_dir / "requirements.txt")]
    return None


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WattError(f"{path}: cannot read it: {exc}", code="WATT_BUILD_LOCK_INVALID",
                        file=str(path)) from None


def _lines(path: Path) -> list[str]:
    """requirements.txt lines without comments and blanks; ``-r other.txt`` inlined."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            out += _lines(path.parent / line.split(None, 1)[1])
            continue
        out.append(line)
    return out


def _locked(lock: Path) -> list[str]:
    """The pinned packages of a uv.lock or poetry.lock (both TOML, ``[[package]]`` with
    name and version); the project itself (uv: ``source = {editable|virtual}``) and
    poetry's dev-only groups are left out."""
    packages = _toml(lock).get("package", [])
    pinned = []
    for package in packages:
        source = package.get("source", {})
        if "editable" in source or "virtual" in source:
            continue
        groups = package.get("groups") or [package.get("category", "main")]
        if "main" not in groups and lock.name == "poetry.lock":
            continue
        if "name" in package and "version" in package:
            pinned.append(f"{package['name']}=={package['version']}")
    return sorted(pinned)


def _poetry_spec(spec) -> str:
    version = spec.get("version", "*") if isinstance(spec, dict) else str(spec)
    if version in ("*", ""):
        return ""
    if version.startswith("^"):  # ^1.2 means >=1.2,<2
        base = version[1:]
        major = base.split(".")[0]
        return f">={base},<{int(major) + 1}" if major.isdigit() else f">={base}"
    if version.startswith("~"):
        return f"~={version.lstrip('~=')}"
    return version if version[0] in "<>=!" else f"=={version}"


def _ignored(relative: str) -> bool:
    parts = relative.split("/")
    for pattern in IGNORED:
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, bare) for p in parts):
            return True
    return False


def _copy_tree(src: Path, dst: Path, skip: Path | None = None) -> None:
    for folder, dirs, files in os.walk(src):
        here = Path(folder)
        rel = here.relative_to(src)
        dirs[:] = [d for d in dirs if not _ignored((rel / d).as_posix())
                   and (skip is None or (here / d).resolve() != skip)]
        for name in files:
            if not _ignored((rel / name).as_posix()):
                target = dst / rel / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(here / name, target)


def watt_source() -> Path | None:
    """Watt's own source tree when it runs from one (an editable install or a
    checkout), else None (it came from an index: the image pip-installs it)."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and _toml(pyproject).get("project", {}).get("name") == "watt":
        return root
    return None


def write_container(build: BuildInput, out: str | os.PathLike) -> list[str]:
    """Write the build context to ``out``; return the files written at its top."""
    loaded = build.loaded
    out = Path(out).resolve()
    root, base = project_root(loaded).resolve(), image_root(loaded)
    if out == root or root.is_relative_to(out):
        raise WattError(f"--out {out} would hold the project itself: choose a folder "
                        "inside or beside it", code="WATT_BUILD_OUT_INVALID")
    if out.exists() and any(out.iterdir()):
        previous = out / "Dockerfile"
        if not (previous.is_file() and "`watt build --container`" in previous.read_text()):
            raise WattError(f"--out {out} is not empty and holds no earlier build: choose "
                            "an empty or new folder", code="WATT_BUILD_OUT_INVALID")
        shutil.rmtree(out)  # an earlier build, replaced whole
    (out / "requirements").mkdir(parents=True)
    # The project folder, and each application folder outside it, where they stand
    # relative to each other: the config's relative paths hold in the image.
    for folder in [root] + [Path(a.path).resolve() for a in loaded.applications]:
        if folder == root or not folder.is_relative_to(root):
            _copy_tree(folder, out / "app" / folder.relative_to(base), skip=out)
    (out / "app" / root.relative_to(base) / DEPLOY_CONFIG).write_text(
        json.dumps(deploy_config(loaded), indent=2) + "\n")
    installs = []
    for name, app_dir in [("project", root)] + [(a.id, Path(a.path)) for a in
                                                 loaded.applications]:
        found = requirements(app_dir)
        if found is None or not found[1]:
            continue
        kind, lines = found
        (out / "requirements" / f"{name}.txt").write_text(
            f"# from {os.path.relpath(app_dir / kind, root)}\n" + "\n".join(lines) + "\n")
        installs.append(f"requirements/{name}.txt")
    source = watt_source()
    if source is not None:
        for part in ("watt", "capabilities"):
            _copy_tree(source / part, out / "watt-src" / part)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).is_file():
                shutil.copy2(source / name, out / "watt-src" / name)
    (out / "Dockerfile").write_text(dockerfile(build, installs, source is not None))
    (out / ".dockerignore").write_text("\n".join(IGNORED) + "\n")
    return sorted(p.name for p in out.iterdir())


def dockerfile(build: BuildInput, installs: list[str], vendored: bool) -> str:
    """The Dockerfile text (pure)."""
    loaded = build.loaded
    defaults = "".join(f"ENV {name}={json.dumps(value)}\n" for name, value in build.plain.items())
    probes = loaded.metrics
    port = loaded.server.port or 3042
    watt = "./watt-src" if vendored else f"watt=={__version__}"
    copy_watt = "COPY watt-src ./watt-src\n" if vendored else ""
    deps = "".join(f"COPY {path} ./{path}\nRUN pip install -r {path}\n" for path in installs)
    # The probe uses the image's own Python: slim images have no curl or wget.
    check = (f"import sys, urllib.request; sys.exit(urllib.request.urlopen("
             f"'http://127.0.0.1:{probes.port}/ready', timeout=3).status != 200)")
    return f"""\
# syntax=docker/dockerfile:1
# Written by `watt build --container` (Watt {__version__}); build and run with
#   docker build -t {image_name(loaded)} .
#   docker run -p {port}:{port} {image_name(loaded)}
FROM {BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
{copy_watt}RUN pip install {watt}
{deps}
FROM {BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid {USER_ID} watt \\
 && useradd --system --uid {USER_ID} --gid watt --home-dir /app --shell /usr/sbin/nologin watt
COPY --from=build /opt/venv /opt/venv
COPY --chown={USER_ID}:{USER_ID} app /app
WORKDIR /app
{defaults}USER {USER_ID}:{USER_ID}
EXPOSE {port} {probes.port}
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \\
  CMD ["python", "-c", {json.dumps(check)}]
STOPSIGNAL SIGTERM
CMD ["watt", "start", "-c", "{config_in_image(loaded)}"]
"""


def image_name(loaded: LoadedConfig) -> str:
    deploy = loaded.config.deploy
    return deploy.image or f"{object_name(loaded)}:latest"


def object_name(loaded: LoadedConfig) -> str:
    """``deploy.name``, else the project folder's name made a DNS label."""
    if loaded.config.deploy.name:
        return loaded.config.deploy.name
    name = "".join(c if c.isalnum() else "-" for c in project_root(loaded).name.lower())
    return name.strip("-")[:63].strip("-") or "watt"
