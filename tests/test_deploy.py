"""`watt build --container` and `watt build --k8s`: the generated files, parsed and
validated (the Dockerfile instruction by instruction, every manifest against the
Kubernetes schema of a pinned version, offline)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from watt.deploy import load_for_build, requirements

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parent.parent
#: The Kubernetes version the manifests are checked against (strict: unknown fields fail).
K8S_VERSION = "1.30.0"


def _project(tmp_path: Path, config: dict | None = None) -> Path:
    """A project: an entrypoint with a uv.lock, a service with requirements.txt, a
    poetry one, a .env, junk that must stay out of the image."""
    root = tmp_path / "shop"
    for name in ("web", "api", "legacy"):
        (root / name).mkdir(parents=True)
        (root / name / "main.py").write_text("async def app(scope, receive, send): pass\n")
    (root / "web" / "pyproject.toml").write_text(
        '[project]\nname = "web"\nversion = "1"\ndependencies = ["starlette>=0.40"]\n')
    (root / "web" / "uv.lock").write_text(
        'version = 1\n[[package]]\nname = "web"\nversion = "1"\nsource = { virtual = "." }\n'
        '[[package]]\nname = "starlette"\nversion = "0.47.2"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
        '[[package]]\nname = "anyio"\nversion = "4.9.0"\n'
        'source = { registry = "https://pypi.org/simple" }\n')
    (root / "api" / "requirements.txt").write_text("# pinned\nhttpx==0.28.1  # client\n"
                                                   "-r extra.txt\n")
    (root / "api" / "extra.txt").write_text("idna==3.10\n")
    (root / "legacy" / "pyproject.toml").write_text(
        '[tool.poetry.dependencies]\npython = "^3.13"\nflask = "^3.0"\n')
    (root / "legacy" / "poetry.lock").write_text(
        '[[package]]\nname = "flask"\nversion = "3.1.1"\ncategory = "main"\n'
        '[[package]]\nname = "pytest"\nversion = "8.4.1"\ncategory = "dev"\n')
    (root / ".env").write_text("DB_PASSWORD=hunter2\nREGION=eu-west-1\n")
    (root / "web" / "__pycache__").mkdir()
    (root / "web" / "__pycache__" / "main.cpython-313.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    config = config or {
        "entrypoint": "web",
        "server": {"port": 8080},
        "metrics": {"port": 9100},
        "gracefulShutdown": {"runtime": 20000},
        "deploy": {"name": "shop", "image": "registry.example/shop:1.2", "replicas": 3,
                   "maxReplicas": 6, "drainDelay": 8000,
                   "resources": {"cpu": "500m", "memory": "256Mi", "cpuLimit": "2"}},
        "applications": [
            {"id": "web", "path": "web", "app": "main:app",
             "env": {"DATABASE_URL": "postgres://shop:${DB_PASSWORD}@db/shop",
                     "REGION": "${REGION}"}},
            {"id": "api", "path": "api", "app": "main:app"},
            {"id": "legacy", "path": "legacy", "app": "main:app"},
        ],
    }
    (root / "watt.json").write_text(json.dumps(config, indent=2))
    return root


def _watt(*args: str, cwd: Path, env: dict | None = None) -> SimpleNamespace:
    """`watt ARGS` in ``cwd``, in this process (click's runner): DB_PASSWORD and
    REGION unset unless ``env`` sets them, as on a build machine."""
    from click.testing import CliRunner

    from watt.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env={"DB_PASSWORD": None, "REGION": None,
                                                           **(env or {})})
    finally:
        os.chdir(here)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout,
                           stderr=result.stderr)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuations joined."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def test_requirements_come_from_each_applications_lock(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert requirements(root / "web") == ("uv.lock", ["anyio==4.9.0", "starlette==0.47.2"])
    assert requirements(root / "api") == ("requirements.txt", ["httpx==0.28.1", "idna==3.10"])
    assert requirements(root / "legacy") == ("poetry.lock", ["flask==3.1.1"])
    (root / "legacy" / "poetry.lock").unlink()
    assert requirements(root / "legacy") == ("pyproject.toml", ["flask>=3.0,<4"])
    assert requirements(root) is None


def test_build_container_writes_a_multi_stage_non_root_context(tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = _watt("build", "--container", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "DB_PASSWORD" in result.stdout  # named as left to the platform
    out = root / "dist" / "container"
    steps = _instructions((out / "Dockerfile").read_text())
    froms = [args for kind, args in steps if kind == "FROM"]
    assert froms == ["python:3.13-slim AS build", "python:3.13-slim AS runtime"]
    runtime = steps[[kind for kind, _ in steps].index("FROM", 1):]
    users = [args for kind, args in runtime if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    # Each application's locked dependencies are installed in the build stage.
    installs = [args for kind, args in steps if kind == "RUN" and "pip install -r" in args]
    assert sorted(installs) == ["pip install -r requirements/api.txt",
                                "pip install -r requirements/legacy.txt",
                                "pip install -r requirements/web.txt"]
    for name, pins in (("web", "starlette==0.47.2"), ("api", "idna==3.10"),
                       ("legacy", "flask==3.1.1")):
        assert pins in (out / "requirements" / f"{name}.txt").read_text()
    assert "pytest" not in (out / "requirements" / "legacy.txt").read_text()
    # Health check on /ready of the probes server, stop signal, the command.
    health = next(args for kind, args in runtime if kind == "HEALTHCHECK")
    probe = json.loads(health.split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"] and "http://127.0.0.1:9100/ready" in probe[2]
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    command = json.loads(next(args for kind, args in runtime if kind == "CMD"))
    assert command == ["watt", "start", "-c", "/app/watt.deploy.json"]
    assert ("EXPOSE", "8080 9100") in runtime
    # A non-secret placeholder gets its build-time value as a default; a secret never.
    envs = " ".join(args for kind, args in runtime if kind == "ENV")
    assert 'REGION="eu-west-1"' in envs and "hunter2" not in (out / "Dockerfile").read_text()
    # Every COPY source exists in the context.
    for kind, args in steps:
        if kind == "COPY" and not args.startswith("--from"):
            source = shlex.split(args)[-2]
            assert (out / source).exists(), source
    # The project is in app/, minus caches, VCS and secrets.
    app = out / "app"
    assert (app / "web" / "main.py").is_file() and (app / "api" / "extra.txt").is_file()
    for gone in (".env", ".git", "web/__pycache__", "dist"):
        assert not (app / gone).exists(), gone
    ignore = (out / ".dockerignore").read_text().split()
    assert {".env", "**/__pycache__", ".git", ".venv"} <= set(ignore)
    # The config the container runs: placeholders kept, addresses public, probes on.
    deployed = json.loads((app / "watt.deploy.json").read_text())
    assert deployed["server"] == {"port": 8080, "hostname": "0.0.0.0"}
    assert deployed["metrics"] == {"port": 9100, "enabled": True, "hostname": "0.0.0.0"}
    assert deployed["applications"][0]["env"]["DATABASE_URL"] == \
        "postgres://shop:${DB_PASSWORD}@db/shop"
    # Watt's own source is in the context and installed from it.
    assert (out / "watt-src" / "watt" / "runtime.py").is_file()
    assert ("RUN", "pip install ./watt-src") in steps


def test_the_deploy_config_runs_in_the_environment_a_container_gives(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert _watt("build", "--container", "--out", str(tmp_path / "ctx"), cwd=root).returncode == 0
    from watt.config import load_config

    loaded = load_config(tmp_path / "ctx" / "app" / "watt.deploy.json",
                         env={"DB_PASSWORD": "s3cret", "REGION": "us-east-1"})
    assert loaded.server.hostname == "0.0.0.0" and loaded.metrics.enabled
    assert loaded.applications[0].env["DATABASE_URL"] == "postgres://shop:s3cret@db/shop"


def _container_engine() -> str | None:
    """Why the image cannot be built here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return "docker is only a client here: no container engine answers `docker info`"
    return None


def test_docker_build_and_run_answers_ready(tmp_path: Path) -> None:
    why = _container_engine()
    if why:
        pytest.skip(f"cannot build the image: {why}")
    shutil.copytree(ROOT / "tests" / "apps" / "basic", tmp_path / "p" / "basic")
    (tmp_path / "p" / "basic" / "requirements.txt").write_text("starlette\n")
    (tmp_path / "p" / "watt.json").write_text(json.dumps(
        {"applications": [{"id": "basic", "path": "basic", "app": "main:app"}]}))
    assert _watt("build", "--container", cwd=tmp_path / "p").returncode == 0
    built = subprocess.run(["docker", "build", "-q", "-t", "watt-test-deploy",
                            str(tmp_path / "p" / "dist" / "container")],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", "watt-test-deploy",
                           "-u"], capture_output=True, text=True, timeout=60)
    assert user.stdout.strip() == "10001"


def _manifests(folder: Path) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}


def test_build_k8s_manifests_validate_against_the_kubernetes_schema(tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = _watt("build", "--k8s", "--out", str(tmp_path / "k8s"), cwd=root)
    assert result.returncode == 0, result.stderr
    found = _manifests(tmp_path / "k8s")
    assert {obj["kind"] for obj in found.values()} == {
        "Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for name, obj in found.items():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # raises when invalid
        assert obj["metadata"]["name"].startswith("shop"), name
    deployment = found["deployment.yaml"]["spec"]
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/shop:1.2"
    assert deployment["replicas"] == 3
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "probes"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "probes"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "probes": 9100}
    # preStop waits drainDelay (8 s); the grace period covers it and gracefulShutdown.runtime.
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "8"]
    assert pod["terminationGracePeriodSeconds"] >= 8 + 20
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"},
                                      "limits": {"memory": "256Mi", "cpu": "2"}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Secrets stay references to a Secret; plain variables come from the ConfigMap.
    env = {e["name"]: e["valueFrom"] for e in container["env"]}
    assert env["DB_PASSWORD"] == {"secretKeyRef": {"name": "shop-secrets", "key": "DB_PASSWORD"}}
    assert env["REGION"] == {"configMapKeyRef": {"name": "shop-config", "key": "REGION"}}
    data = found["configmap.yaml"]["data"]
    assert data["REGION"] == "eu-west-1"
    assert "hunter2" not in (tmp_path / "k8s" / "configmap.yaml").read_text()
    config = json.loads(data["watt.deploy.json"])
    assert config["deploy"]["drainDelay"] == 0  # preStop already waited
    assert config["applications"][0]["env"]["DATABASE_URL"].endswith("${DB_PASSWORD}@db/shop")
    hpa = found["hpa.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 6)
    assert hpa["scaleTargetRef"]["name"] == "shop"
    assert found["pdb.yaml"]["spec"]["minAvailable"] == 1
    service = found["service.yaml"]["spec"]
    assert service["selector"] == deployment["selector"]["matchLabels"]


def test_an_invalid_manifest_is_caught_by_the_validator() -> None:
    """The validation above can fail: a Deployment without a selector does."""
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({"apiVersion": "apps/v1", "kind": "Deployment",
                                      "metadata": {"name": "x"},
                                      "spec": {"template": {}, "replicas": "two"}},
                                     K8S_VERSION, strict=True)


def test_build_errors_are_watt_errors(tmp_path: Path) -> None:
    root = _project(tmp_path)
    bad = _watt("build", "--container", "--out", str(root), cwd=root)
    assert bad.returncode == 1 and "WATT_BUILD_OUT_INVALID" in bad.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    kept = _watt("build", "--container", "--out", str(tmp_path / "mine"), cwd=root)
    assert kept.returncode == 1 and (tmp_path / "mine" / "notes.txt").is_file()
    again = [_watt("build", "--container", cwd=root).returncode for _ in range(2)]
    assert again == [0, 0]  # an earlier build is replaced
    (root / "watt.json").write_text(json.dumps({"applications": [{"id": "a", "path": "a"}],
                                                "deploy": {"replicas": 0}}))
    invalid = _watt("build", "--container", cwd=root)
    assert invalid.returncode == 2 and "deploy.replicas" in invalid.stderr
    assert "Traceback" not in bad.stderr + invalid.stderr


def test_a_missing_non_secret_variable_is_a_config_error(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / ".env").write_text("")
    with pytest.raises(Exception) as caught:
        load_for_build(root / "watt.json")
    assert caught.value.code == "WATT_CONFIG_MISSING_ENV" and "REGION" in str(caught.value)


def test_the_example_stack_builds_with_its_applications_beside_it(tmp_path: Path) -> None:
    """examples/stack takes applications from sibling examples (`../django/greeter`):
    the image holds them where they stand, and the config beside its original."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    result = _watt("build", "--container", "--k8s", "--out", str(tmp_path / "out"),
                   cwd=tmp_path / "examples" / "stack")
    assert result.returncode == 0, result.stderr
    for obj in _manifests(tmp_path / "out" / "k8s").values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    context = tmp_path / "out" / "container"
    steps = _instructions((context / "Dockerfile").read_text())
    command = json.loads(next(args for kind, args in steps if kind == "CMD"))
    # The environment the image gives: its ENV defaults (the .env file stays out).
    image_env = dict(shlex.split(args)[0].split("=", 1) for kind, args in steps
                     if kind == "ENV" and "=" in args and " " not in args)
    assert command[-1] == "/app/stack/watt.deploy.json"
    assert (context / "app" / "stack" / "watt.deploy.json").is_file()
    assert (context / "app" / "django" / "greeter").is_dir()
    assert not (context / "app" / "hello").exists()  # only what the config uses
    from watt.config import load_config

    assert "PLT_SERVER_PORT" in image_env
    loaded = load_config(context / "app" / "stack" / "watt.deploy.json", env=image_env)
    assert all(Path(app.path).is_dir() for app in loaded.applications)
    deployment = yaml.safe_load((tmp_path / "out" / "k8s" / "deployment.yaml").read_text())
    (mount,) = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == command[-1]
