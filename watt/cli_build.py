"""``watt build --container`` and ``watt build --k8s`` (registered on ``watt build``
in ``cli.py``): the deployment artifacts of a project (docs/deploying.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import WattError


def options(func):
    """The deployment options of ``watt build``."""
    for option in reversed((
        click.option("--container", is_flag=True,
                     help="Write a Docker build context (Dockerfile, .dockerignore, the "
                          "project) instead of running the build steps."),
        click.option("--k8s", is_flag=True,
                     help="Write Kubernetes manifests (Deployment, Service, ConfigMap, "
                          "HorizontalPodAutoscaler, PodDisruptionBudget)."),
        click.option("--out", default=None, metavar="DIR",
                     help="Where to write them (default: dist/container and dist/k8s "
                          "beside the config file)."),
    )):
        func = option(func)
    return func


def build_deploy(config_path: str, container: bool, k8s: bool, out: str | None) -> None:
    """Write what was asked; exit 2 on an invalid config, 1 on another error."""
    from .deploy import load_for_build, project_root, write_container

    try:
        build = load_for_build(config_path)
        root = project_root(build.loaded)
        targets = []
        if container:
            folder = Path(out) / "container" if out and k8s else Path(out or root / "dist"
                                                                      / "container")
            targets.append(("container", folder, write_container))
        if k8s:
            from .deploy_k8s import write_k8s

            folder = Path(out) / "k8s" if out and container else Path(out or root / "dist" / "k8s")
            targets.append(("k8s", folder, write_k8s))
        for what, folder, write in targets:
            if folder.exists() and not folder.is_dir():
                raise WattError(f"--out {folder} is a file, not a folder: choose an empty or "
                                "new folder", code="WATT_BUILD_OUT_INVALID")
            try:
                files = write(build, folder)
            except OSError as exc:  # a folder that cannot be created or written
                raise WattError(f"--out {folder}: cannot write there ({exc.strerror}: "
                                f"{exc.filename})", code="WATT_BUILD_OUT_INVALID") from None
            click.echo(f"{what}: wrote {', '.join(files)} in {folder}")
    except WattError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2 if exc.code.startswith("WATT_CONFIG") else 1)
    if container:
        from .deploy import requirements

        bare = [app.id for app in build.loaded.applications
                if requirements(Path(app.path)) is None]
        if bare and requirements(root) is None:
            click.echo("note: no requirements.txt, pyproject.toml or lock file for "
                       f"{', '.join(bare)}: the image installs only Watt for them", err=True)
    if build.secrets:
        click.echo("secrets left to the platform (set them in its environment): "
                   + ", ".join(build.secrets))
