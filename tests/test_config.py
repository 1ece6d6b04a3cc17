"""Config loading: every rule and every error code, with files in tmp_path only."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from watt.config import (
    ApplicationConfig,
    Config,
    LoadedConfig,
    ServerConfig,
    generate_schema,
    load_config,
    main,
)
from watt.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(folder: Path, name: str, text: str) -> Path:
    file = folder / name
    file.write_text(textwrap.dedent(text).lstrip("\n"))
    return file


def folders(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True)


def fails(source: object, code: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(source, env={} if env is None else env)
    assert info.value.code == code, str(info.value)
    return info.value


# --- loading: formats and sources ------------------------------------------------------------


def test_json_file_with_defaults(tmp_path: Path) -> None:
    folders(tmp_path, "api")
    file = write(tmp_path, "watt.json", '{"applications": [{"id": "api", "path": "api"}]}')
    loaded = load_config(file, env={})
    assert isinstance(loaded, LoadedConfig)
    assert loaded.file == str(file)
    assert loaded.base_dir == str(tmp_path)
    assert loaded.entrypoint == "api"
    assert loaded.server == ServerConfig(hostname="127.0.0.1", port=3042, engine="auto")
    (app,) = loaded.applications
    assert app == ApplicationConfig(id="api", path=str(tmp_path / "api"), workers=1)
    assert (app.app, app.kind, app.workers, app.isolation, app.env) == (None, None, 1, "auto", {})
    # the decoded config keeps the path as written; the resolved one is absolute
    assert loaded.config.applications[0].path == "api"


def test_toml_file(tmp_path: Path) -> None:
    folders(tmp_path, "api", "web")
    file = write(tmp_path, "watt.toml", """
        entrypoint = "web"

        [server]
        hostname = "0.0.0.0"
        port = 0
        engine = "hypercorn"

        [[applications]]
        id = "api"
        path = "api"
        app = "api.main:create_app()"
        workers = 3
        isolation = "process"

        [applications.env]
        MODE = "fast"

        [[applications]]
        id = "web"
        path = "./web"
        kind = "django"
    """)
    loaded = load_config(file, env={})
    assert loaded.entrypoint == "web"
    assert loaded.server == ServerConfig(hostname="0.0.0.0", port=0, engine="hypercorn")
    api, web = loaded.applications
    assert (api.app, api.workers, api.isolation, api.env) == (
        "api.main:create_app()", 3, "process", {"MODE": "fast"}
    )
    assert web.path == str(tmp_path / "web")
    assert web.kind == "django"


def test_directory_prefers_json_then_toml(tmp_path: Path) -> None:
    folders(tmp_path, "from-json", "from-toml")
    write(tmp_path, "watt.toml", '[[applications]]\nid = "from-toml"\npath = "from-toml"\n')
    assert load_config(tmp_path, env={}).entrypoint == "from-toml"
    write(tmp_path, "watt.json", '{"applications": [{"id": "from-json", "path": "from-json"}]}')
    loaded = load_config(str(tmp_path), env={})
    assert loaded.entrypoint == "from-json"
    assert loaded.file == str(tmp_path / "watt.json")


def test_dict_source_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders(tmp_path, "api")
    monkeypatch.chdir(tmp_path)
    raw = {"applications": [{"id": "api", "path": "api", "env": {"X": "${X}"}}]}
    loaded = load_config(raw, env={"X": "1"})
    assert loaded.file is None
    assert loaded.base_dir == str(tmp_path)
    assert loaded.applications[0].path == str(tmp_path / "api")
    assert loaded.applications[0].env == {"X": "1"}
    assert raw["applications"][0]["env"] == {"X": "${X}"}  # the caller's dict is untouched


def test_config_source(tmp_path: Path) -> None:
    folders(tmp_path, "api")
    config = Config(
        server=ServerConfig(port=8080),
        applications=[ApplicationConfig(id="api", path=str(tmp_path / "api"), workers=2)],
    )
    loaded = load_config(config, env={})
    assert loaded.server.port == 8080
    assert loaded.applications[0].workers == 2
    assert loaded.config == config


def test_source_of_wrong_type() -> None:
    with pytest.raises(TypeError):
        load_config(42)  # type: ignore[arg-type]


# --- placeholders ----------------------------------------------------------------------------


def test_placeholders_from_env_everywhere(tmp_path: Path) -> None:
    folders(tmp_path, "api-prod")
    write(tmp_path, "watt.json", """
        {
          "server": {"hostname": "${HOST}", "port": "{PLT_PORT}"},
          "applications": [{
            "id": "api-{PLT_STAGE}",
            "path": "api-${PLT_STAGE}",
            "workers": "${WORKERS}",
            "env": {"URL": "postgres://${USER}@db/{PLT_STAGE}", "RAW": "{NOT_PLT}"}
          }]
        }
    """)
    env = {"HOST": "0.0.0.0", "PLT_PORT": "8080", "PLT_STAGE": "prod", "WORKERS": "4",
           "USER": "me", "NOT_PLT": "never"}
    loaded = load_config(tmp_path, env=env)
    # substitution happens before validation, so "8080" and "4" decode as ints
    assert loaded.server.port == 8080
    assert loaded.server.hostname == "0.0.0.0"
    (app,) = loaded.applications
    assert (app.id, app.workers) == ("api-prod", 4)
    assert app.path == str(tmp_path / "api-prod")
    assert app.env == {"URL": "postgres://me@db/prod", "RAW": "{NOT_PLT}"}


def test_placeholders_default_to_os_environ(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folders(tmp_path, "api")
    monkeypatch.setenv("PLT_WATT_TEST_PORT", "4567")
    write(tmp_path, "watt.json", """
        {"server": {"port": "{PLT_WATT_TEST_PORT}"},
         "applications": [{"id": "api", "path": "api"}]}
    """)
    assert load_config(tmp_path).server.port == 4567


def test_placeholders_from_dotenv_and_env_wins(tmp_path: Path) -> None:
    folders(tmp_path, "api")
    write(tmp_path, ".env", 'PLT_PORT=5000\nPLT_HOST="10.0.0.1"\n')
    write(tmp_path, "watt.toml", """
        [server]
        port = "{PLT_PORT}"
        hostname = "{PLT_HOST}"

        [[applications]]
        id = "api"
        path = "api"
    """)
    assert load_config(tmp_path, env={}).server == ServerConfig(hostname="10.0.0.1", port=5000)
    assert load_config(tmp_path, env={"PLT_PORT": "6000"}).server.port == 6000


def test_dotenv_is_not_read_for_dicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders(tmp_path, "api")
    write(tmp_path, ".env", "PLT_PORT=5000\n")
    monkeypatch.chdir(tmp_path)
    raw = {"server": {"port": "{PLT_PORT}"}, "applications": [{"id": "api", "path": "api"}]}
    error = fails(raw, "WATT_CONFIG_MISSING_ENV")
    assert (error.key, error.file, error.line) == ("server.port", None, None)


def test_missing_env_names_variable_key_and_line(tmp_path: Path) -> None:
    folders(tmp_path, "api")
    file = write(tmp_path, "watt.json", """
        {
          "applications": [
            {"id": "api", "path": "api",
             "env": {
               "DB":
                 "postgres://{PLT_DB_HOST}/x"
             }}
          ]
        }
    """)
    error = fails(file, "WATT_CONFIG_MISSING_ENV", env={"OTHER": "1"})
    assert error.key == "applications[0].env.DB"
    assert (error.file, error.line) == (str(file), 5)
    assert "PLT_DB_HOST" in error.message and "applications[0].env.DB" in error.message


# --- unknown keys, types, required keys ------------------------------------------------------


def test_unknown_key_json_with_line_and_suggestion(tmp_path: Path) -> None:
    folders(tmp_path, "api")
    file = write(tmp_path, "watt.json", """
        {
          "server": {
            "hostname": "127.0.0.1",
            "prot": 3000
          },
          "applications": [{"id": "api", "path": "api"}]
        }
    """)
    error = fails(file, "WATT_CONFIG_UNKNOWN_KEY")
    assert (error.key, error.file, error.line) == ("server.prot", str(file), 4)
    assert "`server.prot`" in error.message
    assert "did you mean `port`?" in error.message


def test_unknown_key_in_second_application_json(tmp_path: Path) -> None:
    folders(tmp_path, "a", "b")
    file = write(tmp_path, "watt.json", """
        {
          "entrypoint": "a",
          "applications": [
            {"id": "a", "path": "a", "workers": 1},
            {
              "id": "b",
              "path": "b",
              "wrkers": 2
            }
          ]
        }
    """)
    error = fails(file, "WATT_CONFIG_UNKNOWN_KEY")
    assert (error.key, error.line) == ("applications[1].wrkers", 8)
    assert "did you mean `workers`?" in error.message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    error = fails({"entrypont": "a", "applications": []}, "WATT_CONFIG_UNKNOWN_KEY")
    assert error.key == "entrypont"
    assert "did you mean `entrypoint`?" in error.message


def test_unknown_key_toml_line(tmp_path: Path) -> None:
    folders(tmp_path, "a", "b")
    file = write(tmp_path, "watt.toml", """
        entrypoint = "a"

        [[applications]]
        id = "a"
        path = "a"

        [[applications]]
        id = "b"
        path = "b"
        isolaton = "process"
    """)
    error = fails(file, "WATT_CONFIG_UNKNOWN_KEY")
    assert (error.key, error.file, error.line) == ("applications[1].isolaton", str(file), 10)
    assert "did you mean `isolation`?" in error.message


def test_toml_lines_skip_multiline_strings(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.toml", """
        entrypoint = "a"
        [[applications]]
        id = "a"
        path = "."
        [applications.env]
        NOTE = \"\"\"
        [server]
        prot = 1
        \"\"\"
        [server]
        prot = 2
    """)
    error = fails(file, "WATT_CONFIG_UNKNOWN_KEY")
    assert (error.key, error.line) == ("server.prot", 11)


def test_unknown_key_in_inline_toml_table_points_at_the_table(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.toml", """
        applications = [{ id = "a", path = "." }]
        server = { hostname = "::1", prot = 80 }
    """)
    error = fails(file, "WATT_CONFIG_UNKNOWN_KEY")
    assert (error.key, error.line) == ("server.prot", 2)


@pytest.mark.parametrize(
    ("server", "key", "fragment"),
    [
        ('{"port": "http"}', "server.port", "Expected `int`, got `str`"),
        ('{"port": 70000}', "server.port", "70000"),
        ('{"port": -1}', "server.port", "-1"),
        ('{"engine": "uvicorn"}', "server.engine", "uvicorn"),
        ('{"hostname": 1}', "server.hostname", "Expected `str`"),
    ],
)
def test_invalid_server_values(tmp_path: Path, server: str, key: str, fragment: str) -> None:
    folders(tmp_path, "api")
    file = write(tmp_path, "watt.json",
                 f'{{"applications": [{{"id": "api", "path": "api"}}],\n "server": {server}\n}}')
    error = fails(file, "WATT_CONFIG_INVALID_TYPE")
    assert (error.key, error.line) == (key, 2)
    assert f"`{key}`" in error.message and fragment in error.message


def test_invalid_workers_in_second_application_toml(tmp_path: Path) -> None:
    folders(tmp_path, "a", "b")
    file = write(tmp_path, "watt.toml", """
        entrypoint = "a"
        [[applications]]
        id = "a"
        path = "a"
        [[applications]]
        id = "b"
        path = "b"
        workers = 0
    """)
    error = fails(file, "WATT_CONFIG_INVALID_TYPE")
    assert (error.key, error.line) == ("applications[1].workers", 8)
    assert ">= 1" in error.message


@pytest.mark.parametrize("app_id", ["Api", "api_v2", "-api", "api-", "", "a.b"])
def test_invalid_application_id(app_id: str) -> None:
    error = fails({"applications": [{"id": app_id, "path": "."}]}, "WATT_CONFIG_INVALID_TYPE")
    assert error.key == "applications[0].id"
    assert "plt.local" in error.message


@pytest.mark.parametrize("app", ["main", "main:", ":app", "main:app()()", "1mod:app", "a b:c"])
def test_invalid_app_shape(app: str) -> None:
    error = fails({"applications": [{"id": "a", "path": ".", "app": app}]},
                  "WATT_CONFIG_INVALID_TYPE")
    assert error.key == "applications[0].app"
    assert "module:attr" in error.message


@pytest.mark.parametrize("app", ["main:app", "pkg.sub.main:api.app", "main:create_app()"])
def test_valid_app_shapes(tmp_path: Path, app: str) -> None:
    raw = {"applications": [{"id": "a", "path": str(tmp_path), "app": app}]}
    assert load_config(raw, env={}).applications[0].app == app


def test_env_value_must_be_string_names_its_key() -> None:
    raw = {"applications": [{"id": "a", "path": ".", "env": {"OK": "1", "BAD": 2}}]}
    error = fails(raw, "WATT_CONFIG_INVALID_TYPE")
    assert error.key == "applications[0].env.BAD"


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.json", "[1, 2]")
    error = fails(file, "WATT_CONFIG_INVALID_TYPE")
    assert error.key is None and "object" in error.message


def test_missing_required_key_json(tmp_path: Path) -> None:
    folders(tmp_path, "a")
    file = write(tmp_path, "watt.json", """
        {
          "applications": [
            {"id": "a", "path": "a"},
            {"path": "a"}
          ]
        }
    """)
    error = fails(file, "WATT_CONFIG_MISSING_KEY")
    assert (error.key, error.line) == ("applications[1].id", 4)
    assert "`applications[1].id`" in error.message


def test_missing_required_key_toml(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.toml", """
        [autoload]
        exclude = ["x"]
    """)
    error = fails(file, "WATT_CONFIG_MISSING_KEY")
    assert (error.key, error.line) == ("autoload.path", 1)


# --- syntax and files ------------------------------------------------------------------------


def test_json_syntax_error_line(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.json", '{\n  "server": {\n    "port": 3042,,\n  }\n}\n')
    error = fails(file, "WATT_CONFIG_SYNTAX")
    assert (error.file, error.line) == (str(file), 3)


def test_truncated_json(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.json", '{\n  "server": {\n')
    error = fails(file, "WATT_CONFIG_SYNTAX")
    assert error.line == 2


def test_toml_syntax_error_line(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.toml", '[server]\nhostname = "x"\nport = \n')
    error = fails(file, "WATT_CONFIG_SYNTAX")
    assert (error.file, error.line) == (str(file), 3)


def test_missing_file(tmp_path: Path) -> None:
    error = fails(tmp_path / "nope.json", "WATT_CONFIG_NOT_FOUND")
    assert error.file == str(tmp_path / "nope.json")


def test_directory_without_config(tmp_path: Path) -> None:
    error = fails(tmp_path, "WATT_CONFIG_NOT_FOUND")
    assert "watt.json" in error.message and "watt.toml" in error.message


def test_unsupported_extension(tmp_path: Path) -> None:
    error = fails(write(tmp_path, "watt.yaml", "a: 1\n"), "WATT_CONFIG_INVALID")
    assert ".json or .toml" in error.message


def test_application_path_must_exist(tmp_path: Path) -> None:
    folders(tmp_path, "a")
    (tmp_path / "file-not-folder").write_text("")
    file = write(tmp_path, "watt.json", """
        {
          "entrypoint": "a",
          "applications": [
            {"id": "a", "path": "a"},
            {"id": "b",
             "path": "file-not-folder"}
          ]
        }
    """)
    error = fails(file, "WATT_CONFIG_PATH_NOT_FOUND")
    assert (error.key, error.line) == ("applications[1].path", 6)
    assert "file-not-folder" in error.message


# --- autoload --------------------------------------------------------------------------------


def test_autoload_with_exclude_hidden_and_override(tmp_path: Path) -> None:
    folders(tmp_path, "apps/web", "apps/Admin", "apps/api", "apps/legacy", "apps/.git",
            "apps/_shared", "custom-api")
    (tmp_path / "apps" / "README.md").write_text("not an application")
    write(tmp_path, "watt.json", """
        {
          "entrypoint": "web",
          "autoload": {"path": "apps", "exclude": ["legacy"]},
          "applications": [{"id": "api", "path": "custom-api", "workers": 2}]
        }
    """)
    loaded = load_config(tmp_path, env={})
    ids = [a.id for a in loaded.applications]
    assert ids == ["api", "admin", "web"]  # explicit first, then autoloaded by folder name
    api, admin, web = loaded.applications
    assert (api.path, api.workers) == (str(tmp_path / "custom-api"), 2)
    assert admin.path == str(tmp_path / "apps" / "Admin")
    assert web == ApplicationConfig(id="web", path=str(tmp_path / "apps" / "web"), workers=1)


def test_autoload_alone_single_application_is_entrypoint(tmp_path: Path) -> None:
    folders(tmp_path, "apps/only")
    write(tmp_path, "watt.toml", '[autoload]\npath = "apps"\n')
    assert load_config(tmp_path, env={}).entrypoint == "only"


def test_autoload_path_must_exist(tmp_path: Path) -> None:
    file = write(tmp_path, "watt.toml", '[autoload]\npath = "services"\n')
    error = fails(file, "WATT_CONFIG_PATH_NOT_FOUND")
    assert (error.key, error.line) == ("autoload.path", 2)


def test_autoload_folder_that_is_no_valid_id(tmp_path: Path) -> None:
    folders(tmp_path, "apps/web", "apps/my_app")
    file = write(tmp_path, "watt.toml", '[autoload]\npath = "apps"\n')
    error = fails(file, "WATT_CONFIG_INVALID")
    assert error.key == "autoload.path"
    assert "my_app" in error.message and "autoload.exclude" in error.message


def test_autoload_folders_with_one_id(tmp_path: Path) -> None:
    folders(tmp_path, "apps/web", "apps/Web")
    if len(os.listdir(tmp_path / "apps")) < 2:
        pytest.skip("case-insensitive file system")
    error = fails({"autoload": {"path": str(tmp_path / "apps")}}, "WATT_CONFIG_DUPLICATE_ID")
    assert error.key == "autoload.path"


# --- ids and entrypoint ----------------------------------------------------------------------


def test_duplicate_ids(tmp_path: Path) -> None:
    folders(tmp_path, "a")
    file = write(tmp_path, "watt.json", """
        {
          "applications": [
            {"id": "a", "path": "a"},
            {"path": "a",
             "id": "a"}
          ]
        }
    """)
    error = fails(file, "WATT_CONFIG_DUPLICATE_ID")
    assert (error.key, error.line) == ("applications[1].id", 5)
    assert "'a'" in error.message


def test_entrypoint_names_an_application(tmp_path: Path) -> None:
    folders(tmp_path, "api", "web")
    file = write(tmp_path, "watt.json", """
        {
          "applications": [{"id": "api", "path": "api"}, {"id": "web", "path": "web"}],
          "entrypoint": "wbe"
        }
    """)
    error = fails(file, "WATT_CONFIG_ENTRYPOINT")
    assert (error.key, error.line) == ("entrypoint", 3)
    assert "api, web" in error.message and "did you mean 'web'?" in error.message


def test_entrypoint_required_with_several_applications(tmp_path: Path) -> None:
    raw = {"applications": [{"id": "api", "path": str(tmp_path)},
                            {"id": "web", "path": str(tmp_path)}]}
    error = fails(raw, "WATT_CONFIG_ENTRYPOINT")
    assert error.key == "entrypoint" and "api, web" in error.message
    raw["entrypoint"] = "web"
    assert load_config(raw, env={}).entrypoint == "web"


def test_at_least_one_application() -> None:
    error = fails({"applications": []}, "WATT_CONFIG_INVALID")
    assert error.key == "applications" and "at least one" in error.message


# --- schema ----------------------------------------------------------------------------------


def test_schema_file_is_fresh() -> None:
    on_disk = json.loads((REPO / "config.schema.json").read_text())
    assert on_disk == generate_schema(), (
        "config.schema.json is stale: run `python -m watt.config --schema > config.schema.json`"
    )


def test_schema_shape() -> None:
    schema = generate_schema()
    assert schema["$id"] and schema["title"] == "Watt configuration"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"$schema", "entrypoint", "server", "applications",
                                         "autoload", "mesh", "restartOnError",
                                         "gracefulShutdown", "limits", "managementApi",
                                         "workers", "metrics", "health", "logger", "telemetry",
                                         "deploy", "auth", "httpCache", "dashboard"}
    assert schema["$defs"]["MeshConfig"]["properties"]["timeout"]["exclusiveMinimum"] == 0
    app = schema["$defs"]["ApplicationConfig"]
    assert app["required"] == ["id", "path"]
    assert {"type": "integer", "minimum": 1} in app["properties"]["workers"]["anyOf"]
    assert {"type": "integer", "minimum": 1} in schema["properties"]["workers"]["anyOf"]
    assert schema["$defs"]["ServerConfig"]["properties"]["port"]["maximum"] == 65535


def test_schema_key_in_config_is_accepted(tmp_path: Path) -> None:
    raw = {"$schema": "./config.schema.json", "applications": [{"id": "a", "path": str(tmp_path)}]}
    assert load_config(raw, env={}).config.schema == "./config.schema.json"


def test_main_prints_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == generate_schema()


def test_any_input_gives_a_config_or_a_coded_error() -> None:
    """Property: the loader never raises anything but a WattError with a code."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from watt.errors import WattError

    leaves = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(),
                       st.text(max_size=8), st.sampled_from(["a", "/tmp", "main:app", "auto"]))
    keys = st.sampled_from(["entrypoint", "server", "applications", "autoload", "id", "path",
                            "app", "workers", "port", "hostname", "env", "mesh", "limits",
                            "health", "kind", "isolation", "x", "$schema"])
    values = st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(keys, values, max_size=5))
    def check(raw):
        try:
            load_config(raw, env={})
        except WattError as exc:
            assert exc.code.startswith("WATT_CONFIG_") and str(exc)

    check()


def test_top_level_workers_is_the_default_for_applications(tmp_path: Path) -> None:
    raw = {"workers": 3, "entrypoint": "a", "applications": [
        {"id": "a", "path": str(tmp_path)}, {"id": "b", "path": str(tmp_path), "workers": 1}]}
    loaded = load_config(raw, env={})
    assert [a.workers for a in loaded.applications] == [3, 1]
    assert [a.workers for a in load_config({"applications": [
        {"id": "a", "path": str(tmp_path)}]}, env={}).applications] == [1]
