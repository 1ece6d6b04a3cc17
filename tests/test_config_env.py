"""Per-environment overlays (watt/config_env.py) and `watt config --resolved --env`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_config import write

from watt.cli import main
from watt.cli_config import mask_config
from watt.config import load_config
from watt.config_env import merge
from watt.errors import ConfigError


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("web", "api"):
        (tmp_path / name).mkdir()
    write(tmp_path, "watt.json", """
        {
          "entrypoint": "web",
          "server": {"hostname": "127.0.0.1", "port": 3042},
          "logger": {"level": "info", "redact": ["applications.*.env.PLAIN_ID"]},
          "applications": [
            {"id": "web", "path": "web", "env": {"MODE": "dev", "KEEP": "yes"}},
            {"id": "api", "path": "api", "workers": 1}
          ]
        }
        """)
    return tmp_path


# -- the merge rules, pure -------------------------------------------------------------------
def test_objects_merge_key_by_key_and_other_arrays_are_replaced():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": {"k": 1}}
    origins: dict[str, str] = {}
    merged = merge(base, {"a": {"y": [3]}, "c": None, "d": {"n": 1}}, origins=origins)
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 1, "c": None, "d": {"n": 1}}
    assert base["a"]["y"] == [1, 2]  # the inputs are left alone
    assert origins == {"a.y": "a.y", "c": "c", "d": "d"}


def test_applications_merge_by_id_and_new_ids_are_appended():
    base = {"applications": [{"id": "a", "path": "a", "env": {"X": "1"}}, {"id": "b"}]}
    origins: dict[str, str] = {}
    merged = merge(base, {"applications": [{"id": "b", "workers": 2},
                                           {"id": "a", "env": {"Y": "2"}},
                                           {"id": "c", "path": "c"}]}, origins=origins)
    assert merged["applications"] == [
        {"id": "a", "path": "a", "env": {"X": "1", "Y": "2"}},
        {"id": "b", "workers": 2}, {"id": "c", "path": "c"}]
    # a key's path in the result -> its path in the overlay (indexes differ)
    assert origins["applications[1].workers"] == "applications[0].workers"
    assert origins["applications[0].env.Y"] == "applications[1].env.Y"
    assert origins["applications[2]"] == "applications[2]"
    assert "applications[0]" not in origins  # merged entries keep the base's own keys


# -- loading ---------------------------------------------------------------------------------
def test_watt_env_selects_the_json_overlay(project: Path):
    write(project, "watt.production.json", """
        {"server": {"port": 8080},
         "applications": [{"id": "web", "env": {"MODE": "prod"}}, {"id": "api", "workers": 3}]}
        """)
    base = load_config(project, env={})
    assert base.server.port == 3042 and base.applications[1].workers == 1
    loaded = load_config(project, env={"WATT_ENV": "production"})
    assert loaded.server.port == 8080 and loaded.server.hostname == "127.0.0.1"
    assert loaded.applications[0].env == {"MODE": "prod", "KEEP": "yes"}
    assert loaded.applications[1].workers == 3 and loaded.file == str(project / "watt.json")
    # the explicit name wins over WATT_ENV
    assert load_config(project, env={"WATT_ENV": "nope"}, environment="production") \
        .server.port == 8080


def test_toml_overlay_with_placeholders_and_a_dotenv_watt_env(project: Path):
    write(project, "watt.staging.toml", """
        [server]
        port = "{PLT_PORT}"

        [[applications]]
        id = "extra"
        path = "api"
        """)
    write(project, ".env", "WATT_ENV=staging\nPLT_PORT=9000\n")
    loaded = load_config(project, env={})
    assert loaded.server.port == 9000
    assert [a.id for a in loaded.applications] == ["web", "api", "extra"]


def production_error(project: Path, overlay: str | None = None) -> ConfigError:
    """The error of loading ``project`` with ``watt.production.json`` (written when given)."""
    if overlay is not None:
        (project / "watt.production.json").write_text(overlay)
    with pytest.raises(ConfigError) as info:
        load_config(project, env={}, environment="production")
    return info.value


def test_overlay_errors_name_the_overlay_file_line_and_key(project: Path):
    overlay = write(project, "watt.production.json", """
        {
          "applications": [
            {"id": "api",
             "workers": "many"}
          ]
        }
        """)
    err = production_error(project)
    assert (err.code, err.file, err.line, err.key) == (
        "WATT_CONFIG_INVALID_TYPE", str(overlay), 4, "applications[0].workers")
    assert "`applications[0].workers`" in err.message  # the overlay's index, not the merged 1
    err = production_error(project, '{"server": {"prot": 1}}')
    assert err.code == "WATT_CONFIG_UNKNOWN_KEY" and err.file == str(overlay)
    assert "did you mean `port`" in err.message
    err = production_error(project, '{"applications": [{"id": "new"}]}')  # no path
    assert (err.code, err.file, err.key) == (
        "WATT_CONFIG_MISSING_KEY", str(overlay), "applications[0].path")
    err = production_error(project, '{"applications": [{"id": "apj", "workers": 2}]}')
    assert (err.code, err.key, err.line) == ("WATT_CONFIG_MISSING_KEY", "applications[0].path", 1)
    assert "id 'apj' names no entry of the base file" in err.message
    assert "did you mean 'api'?" in err.message and "needs `path`" in err.message
    err = production_error(project, '{"applications": [{"workers": 2}]}')  # no id
    assert (err.code, err.key) == ("WATT_CONFIG_MISSING_KEY", "applications[0].id")
    err = production_error(project, '{"server": ')
    assert err.code == "WATT_CONFIG_SYNTAX" and err.file == str(overlay)
    # the base file's own mistakes still point at the base file
    (project / "watt.json").write_text('{"applications": [{"id": "web", "path": "web", '
                                       '"workers": 0}]}')
    assert production_error(project, '{"server": {"port": 1}}').file == \
        str(project / "watt.json")


def test_missing_ambiguous_or_bad_environment_names(project: Path):
    with pytest.raises(ConfigError) as info:
        load_config(project, env={"WATT_ENV": "prod"})
    assert info.value.code == "WATT_CONFIG_NOT_FOUND" and "watt.prod.json" in info.value.message
    write(project, "watt.prod.json", "{}")
    write(project, "watt.prod.toml", "")
    with pytest.raises(ConfigError, match="two overlays"):
        load_config(project, env={"WATT_ENV": "prod"})
    with pytest.raises(ConfigError, match="not valid"):
        load_config(project, env={}, environment="../etc")
    assert load_config({"applications": [{"id": "a", "path": "."}]},
                       env={"WATT_ENV": "prod"}).entrypoint == "a"  # a dict has no overlay


# -- watt config --resolved --env, secrets masked -------------------------------------------
def test_mask_config_hides_secret_names_urls_and_redact_paths():
    data = {"managementApi": {"token": "t" * 16, "port": 1},
            "applications": [{"env": {"DB_PASSWORD": "x", "URL": "redis://u:pw@h/0",
                                      "PLAIN_ID": "abc", "OTHER": "shown"}}],
            "config": {"applications": [{"env": {"PLAIN_ID": "abc"}}]}}
    masked = mask_config(data, ["applications.*.env.PLAIN_ID"])
    assert masked == {"managementApi": {"token": "****", "port": 1},
                      "applications": [{"env": {"DB_PASSWORD": "****",
                                                "URL": "redis://u:****@h/0",
                                                "PLAIN_ID": "****", "OTHER": "shown"}}],
                      "config": {"applications": [{"env": {"PLAIN_ID": "****"}}]}}


def test_watt_config_resolved_with_env_masks_secrets(project: Path, monkeypatch):
    write(project, "watt.production.json", """
        {"server": {"port": 8080},
         "applications": [{"id": "api", "env": {"API_TOKEN": "${TOKEN}",
                                                "PLAIN_ID": "id-1"}}]}
        """)
    monkeypatch.chdir(project)
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    monkeypatch.setenv("WATT_ENV", "")  # restored (unset) after the test: --env sets it
    monkeypatch.delenv("WATT_ENV")
    runner = CliRunner()
    result = runner.invoke(main, ["config", "--resolved", "--env", "production"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["server"]["port"] == 8080
    assert resolved["applications"][1]["env"] == {"API_TOKEN": "****", "PLAIN_ID": "****"}
    assert "s3cr3t-value" not in result.output and "id-1" not in result.output
    shown = runner.invoke(main, ["config", "--resolved", "--env", "production",
                                 "--show-secrets"])
    assert json.loads(shown.output)["applications"][1]["env"]["API_TOKEN"] == "s3cr3t-value"
    assert os.environ["WATT_ENV"] == "production"  # what the runtime's applications see


def test_watt_start_and_dev_take_env(project: Path, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.setenv("WATT_ENV", "")  # restored (unset) after the test: --env sets it
    monkeypatch.delenv("WATT_ENV")
    for command in ("start", "dev"):
        result = CliRunner().invoke(main, [command, "--env", "missing"])
        assert result.exit_code == 2  # the overlay is looked for before anything starts
        assert "WATT_CONFIG_NOT_FOUND" in result.output and "watt.missing.json" in result.output
