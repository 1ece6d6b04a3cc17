"""``watt create``: a fresh project that ``watt start`` serves at once, and ``--add``.

Every command runs as the user runs it (a subprocess of the real CLI), and
what it generates runs on a real runtime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import ROOT, WattProcess

from watt.scaffold import KINDS

GREETING = {"app": "api", "message": "Hello from api!"}


def watt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watt.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_create_then_start_serves_a_mesh_call(tmp_path, kind):
    done = watt("create", "shop", "--kind", kind, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    project = tmp_path / "shop"
    assert "cd shop" in done.stdout and "watt start" in done.stdout
    config = json.loads((project / "watt.json").read_text())
    assert config["entrypoint"] == "web"
    assert [(a["id"], a["kind"]) for a in config["applications"]] == [("web", kind),
                                                                      ("api", kind)]
    assert (project / "tests" / "test_project.py").is_file()
    assert (project / "README.md").is_file()
    assert (project / "requirements.txt").is_file() == (KINDS[kind].requirement is not None)

    proc = WattProcess("--port", "0", cwd=project)  # watt.json of the current folder
    try:
        url = proc.wait_url()
        reply = httpx.get(url + "/", timeout=30)
        assert reply.status_code == 200
        # Only the service knows this answer: the entrypoint got it over the mesh.
        assert reply.json() == {"app": "web", "service": GREETING}
        assert httpx.get(url + "/hello", timeout=30).status_code == 404  # not the entry's
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.kill()


def test_the_generated_test_passes(tmp_path):
    assert watt("create", "proj", "--kind", "flask", cwd=tmp_path).returncode == 0
    # Only Watt's plugin (the fixture): the other plugins of this venv take seconds to load.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "watt.testing",
                          "-p", "no:cacheprovider"],
                         cwd=tmp_path / "proj", capture_output=True, text=True, timeout=120,
                         env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_add_an_application_then_refuse_the_same_id(tmp_path, watt_runtime):
    assert watt("create", "proj", "--kind", "asgi", cwd=tmp_path).returncode == 0
    project = tmp_path / "proj"
    added = watt("create", "--add", "billing", "--kind", "flask", "proj", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "http://billing.plt.local" in added.stdout
    apps = json.loads((project / "watt.json").read_text())["applications"]
    assert apps[-1] == {"id": "billing", "path": "billing", "kind": "flask"}
    assert "flask" in (project / "requirements.txt").read_text()

    rt = watt_runtime(project / "watt.json")
    reply = rt.inject("billing", "GET", "/hello")
    assert reply.status == 200 and reply.json() == {"app": "billing",
                                                    "message": "Hello from billing!"}
    assert rt.inject("api", "GET", "/hello").json() == GREETING

    before = (project / "watt.json").read_text()
    again = watt("create", "--add", "billing", cwd=project)  # DIR defaults to "."
    assert again.returncode == 1
    assert "WATT_CREATE_APP_EXISTS" in again.stderr and "Traceback" not in again.stderr
    assert (project / "watt.json").read_text() == before
    for bad in ("Billing", "-x", "a_b"):
        refused = watt("create", "--add", bad, cwd=project)
        assert refused.returncode == 1 and "WATT_CREATE_BAD_ID" in refused.stderr


def test_add_to_a_toml_project_and_rollback_when_it_cannot(tmp_path):
    project = tmp_path / "p"
    (project / "web").mkdir(parents=True)
    (project / "web" / "main.py").write_text("async def app(scope, receive, send): ...\n")
    (project / "watt.toml").write_text(
        '[[applications]]\nid = "web"\npath = "web"\nkind = "asgi"\n')
    assert watt("create", "--add", "api", "--kind", "asgi", cwd=project).returncode == 0
    from watt.config import load_config

    loaded = load_config(str(project / "watt.toml"))
    assert [a.id for a in loaded.applications] == ["web", "api"]

    inline = tmp_path / "inline"  # `applications = [...]` cannot take a [[applications]] table
    (inline / "web").mkdir(parents=True)
    (inline / "web" / "main.py").write_text("async def app(scope, receive, send): ...\n")
    text = 'applications = [{ id = "web", path = "web", kind = "asgi" }]\n'
    (inline / "watt.toml").write_text(text)
    refused = watt("create", "--add", "api", cwd=inline)
    assert refused.returncode == 1 and "WATT_CREATE_CONFIG_EDIT" in refused.stderr
    assert (inline / "watt.toml").read_text() == text  # rolled back
    assert not (inline / "api").exists()


def test_add_without_a_project_says_so(tmp_path):
    done = watt("create", "--add", "api", cwd=tmp_path)
    assert done.returncode == 1 and "WATT_CREATE_NO_CONFIG" in done.stderr


def test_a_non_empty_folder_is_refused_unless_forced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "README.md").write_text("my readme")
    refused = watt("create", cwd=tmp_path)
    assert refused.returncode == 1
    assert "WATT_CREATE_NOT_EMPTY" in refused.stderr and "--force" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "notes.txt"]

    forced = watt("create", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"  # nothing else touched
    assert (tmp_path / "README.md").read_text() == "my readme"
    assert (tmp_path / "watt.json").is_file() and (tmp_path / "web" / "main.py").is_file()


def test_usage_errors_exit_2_and_help_lists_the_kinds(tmp_path):
    out = watt("create", "--help", cwd=ROOT)
    assert out.returncode == 0
    for kind in KINDS:
        assert kind in out.stdout
    assert watt("create", "--kind", "cobol", cwd=tmp_path).returncode == 2
    assert list(tmp_path.iterdir()) == []
