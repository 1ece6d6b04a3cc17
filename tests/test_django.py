"""Django projects (capabilities/django.py) on a real runtime, over real sockets.

tests/apps/django_site is a minimal ``startproject`` layout (admin, auth,
sessions, staticfiles) whose sqlite file and STATIC_ROOT come from the
environment, so every run uses a tmp folder.  It runs over ASGI (it has
``mysite/asgi.py``) in a subinterpreter and in a process, and over WSGI from
a copy without ``asgi.py``.  No config names a ``kind``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import httpx
import pytest
from support import APPS, ROOT, app_config

from capabilities import django as django_capability
from watt import ApplicationStartError
from watt.capability import discover
from watt.testing import RuntimeHandle

SITE = APPS / "django_site"
STACKS = [("asgi", "auto"), ("asgi", "process"), ("wsgi", "auto")]
PASSWORD = "correct horse battery staple"


def manage(folder, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=folder,
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The tmp database (migrated, with a superuser) and a WSGI-only copy of the site."""
    tmp = tmp_path_factory.mktemp("django")
    env = {"DJANGO_DB": str(tmp / "db.sqlite3"), "DJANGO_STATIC_ROOT": str(tmp / "static")}
    migrate = manage(SITE, "migrate", "--noinput", env=env)
    assert migrate.returncode == 0, migrate.stderr
    created = manage(SITE, "createsuperuser", "--noinput", "--username", "admin",
                     "--email", "admin@example.com",
                     env=dict(env, DJANGO_SUPERUSER_PASSWORD=PASSWORD))
    assert created.returncode == 0, created.stderr
    wsgi_copy = tmp / "wsgi_site"
    shutil.copytree(SITE, wsgi_copy, ignore=shutil.ignore_patterns(
        "asgi.py", "__pycache__", "db.sqlite3", "staticfiles"))
    return {"env": env, "tmp": tmp, "folders": {"asgi": SITE, "wsgi": wsgi_copy}}


def django_app(project, mode: str = "asgi", isolation: str = "auto", **env) -> dict:
    return {"id": "django", "path": str(project["folders"][mode]), "isolation": isolation,
            "env": dict(project["env"], **env)}


@pytest.fixture(scope="module")
def runtimes(project):
    started: dict[tuple, RuntimeHandle] = {}

    def get(mode: str, isolation: str) -> RuntimeHandle:
        if (mode, isolation) not in started:
            rt = RuntimeHandle({"entrypoint": "django", "applications": [
                django_app(project, mode, isolation), app_config("peer")]})
            rt.mode, rt.isolation = mode, isolation
            started[(mode, isolation)] = rt
        return started[(mode, isolation)]

    yield get
    for rt in started.values():
        rt.stop()


@pytest.fixture
def stack(request, runtimes) -> RuntimeHandle:
    return runtimes(*request.param)


every_stack = pytest.mark.parametrize("stack", STACKS, indirect=True, ids="-".join)


# -- detection: reads files, never imports them -------------------------------------
NEVER_IMPORTED = "raise SystemExit('detection must not import me')\n"


def write(folder, name: str, text: str) -> None:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(NEVER_IMPORTED + text)


def test_detection_reads_the_settings_module_from_manage_py(tmp_path):
    write(tmp_path, "manage.py",
          'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.conf.prod")\n')
    assert django_capability.detect(str(tmp_path)) == {"settings": "proj.conf.prod",
                                                      "asgi": False}
    write(tmp_path, "proj/conf/asgi.py", "application = None\n")
    assert django_capability.detect(str(tmp_path))["asgi"] is True
    assert django_capability.detect(str(SITE)) == {"settings": "mysite.settings",
                                                  "asgi": True}


def test_detection_without_a_default_finds_the_one_settings_package(tmp_path):
    write(tmp_path, "manage.py", "main()\n")
    write(tmp_path, "web/settings.py", "DEBUG = False\n")
    assert django_capability.detect(str(tmp_path)) == {"settings": "web.settings",
                                                      "asgi": False}
    assert django_capability.detect(str(tmp_path / "web")) is None  # no manage.py


def test_django_wins_over_the_other_capabilities(tmp_path):
    write(tmp_path, "manage.py", "'DJANGO_SETTINGS_MODULE', 'site.settings'\n")
    write(tmp_path, "wsgi.py", "application = None\n")
    write(tmp_path, "index.html", "<h1>hi</h1>")
    ordered = sorted(discover().values(), key=lambda c: -c.priority)
    assert next(c.name for c in ordered if c.detect(str(tmp_path))) == "django"


# -- a real runtime --------------------------------------------------------------------
@every_stack
def test_kind_detected_and_view_runs_where_isolation_says(stack):
    info = {a["id"]: a for a in stack.applications()}["django"]
    assert info["kind"] == "django"  # no `kind` in the config
    who = httpx.get(stack.url + "/whoami", timeout=30).json()
    assert who["settings"] == "mysite.settings"
    assert who["handler"] == ("ASGIRequest" if stack.mode == "asgi" else "WSGIRequest")
    if stack.isolation == "auto":
        assert info["isolation"] == "subinterpreter"
        assert who["pid"] == os.getpid() and who["interpreter"] != 0
    else:
        assert info["isolation"] == "process" and who["pid"] != os.getpid()


@pytest.mark.parametrize("isolation", ["auto", "process"])
def test_the_apps_env_overrides_the_settings_module(watt_runtime, project, isolation):
    app = django_app(project, isolation=isolation,
                     DJANGO_SETTINGS_MODULE="mysite.settings_other")
    who = httpx.get(watt_runtime({"applications": [app]}).url + "/whoami", timeout=30).json()
    assert (who["settings"], who["time_zone"]) == ("mysite.settings_other", "Europe/Paris")


def login_form(client: httpx.Client) -> str:
    page = client.get("/admin/login/?next=/admin/")
    assert page.status_code == 200
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


@every_stack
def test_admin_login_keeps_the_session_across_requests(stack):
    with httpx.Client(base_url=stack.url, timeout=60, follow_redirects=True) as client:
        assert client.get("/admin/").url.path == "/admin/login/"  # not logged in yet
        token = login_form(client)
        assert client.cookies.get("csrftoken")
        reply = client.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": token, "username": "admin", "password": PASSWORD,
            "next": "/admin/"})
        assert reply.status_code == 200 and reply.url.path == "/admin/"
        assert [r.status_code for r in reply.history] == [302]
        assert client.cookies.get("sessionid")
        assert "Site administration" in reply.text and "Log out" in reply.text
        again = client.get("/admin/auth/user/")  # the session holds on a new request
        assert again.status_code == 200 and "admin@example.com" in again.text


@pytest.mark.parametrize("stack", [("asgi", "auto")], indirect=True, ids="-".join)
def test_a_post_without_the_csrf_token_is_refused(stack):
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        login_form(client)
        reply = client.post("/admin/login/", data={"username": "admin", "password": PASSWORD})
        assert reply.status_code == 403 and "CSRF" in reply.text


@every_stack
def test_mesh_calls_to_and_from_django(stack):
    out = httpx.get(stack.url + "/mesh", params={"to": "peer"}, timeout=30).json()
    assert out["status"] == 200
    assert out["body"]["app"] == "peer" and out["body"]["host"] == "peer.plt.local"
    back = stack.mesh.get("http://peer.plt.local/mesh-sync",
                          params={"target": "django.plt.local"}).json()
    assert back["status"] == 200
    assert back["body"]["app"] == "django" and back["body"]["host"] == "django.plt.local"


@pytest.mark.parametrize("mode", ["asgi", "wsgi"])
def test_static_files_are_served_after_build(watt_runtime, project, tmp_path, mode):
    static_root = tmp_path / "static"
    app = django_app(project, mode, DJANGO_STATIC_ROOT=str(static_root))
    rt = watt_runtime({"applications": [app]})
    css = rt.url + "/static/admin/css/base.css"
    assert httpx.get(css, timeout=30).status_code == 404  # Django's 404: nothing collected
    status, output = django_capability.build(app["path"], {"env": app["env"]})
    assert status == 0, output
    assert "static files copied" in output and (static_root / "admin/css/base.css").is_file()
    reply = httpx.get(css, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/css; charset=utf-8"
    assert reply.content == (static_root / "admin/css/base.css").read_bytes()
    assert httpx.get(rt.url + "/static/nope.css", timeout=30).status_code == 404
    assert httpx.get(rt.url + "/whoami", timeout=30).status_code == 200  # Django still


def test_build_reports_a_failing_collectstatic(project, tmp_path):
    status, output = django_capability.build(
        str(SITE), {"env": dict(project["env"], DJANGO_EXTRA_APPS="no_such_app")})
    assert status != 0 and "no_such_app" in output


@pytest.mark.parametrize("isolation", ["auto", "process"])
def test_an_import_error_at_start_shows_djangos_traceback(watt_runtime, project, isolation):
    app = django_app(project, isolation=isolation, DJANGO_EXTRA_APPS="no_such_app")
    with pytest.raises(ApplicationStartError) as info:
        watt_runtime({"applications": [app]})
    err = info.value
    assert err.app_id == "django" and err.code == "WATT_APP_IMPORT_FAILED"
    assert "No module named 'no_such_app'" in str(err)
    assert f"django{os.sep}apps{os.sep}" in err.detail  # Django's own frames are kept
    assert "watt/worker" not in err.detail


def test_djangos_time_zone_stays_inside_its_subinterpreter(watt_runtime, project):
    import time

    time.tzset()
    before = time.tzname
    app = django_app(project, DJANGO_TIME_ZONE="America/Chicago")
    rt = watt_runtime({"applications": [app]})
    assert httpx.get(rt.url + "/whoami", timeout=30).json()["time_zone"] == "America/Chicago"
    time.tzset()  # what the process's C library now says
    assert time.tzname == before


def test_the_django_example(watt_runtime, tmp_path):
    folder = tmp_path / "example"
    shutil.copytree(ROOT / "examples" / "django", folder,
                    ignore=shutil.ignore_patterns("staticfiles", "__pycache__"))
    rt = watt_runtime(folder / "watt.json")
    assert {a["id"]: a["kind"] for a in rt.applications()} == {"web": "django",
                                                               "greeter": "asgi"}
    assert "Hello from Django" in httpx.get(rt.url, timeout=30).text
    assert httpx.get(rt.url + "/api/info", timeout=30).json()["framework"] == "django"
    reply = httpx.get(rt.url + "/greet", params={"name": "Ada"}, timeout=30).json()
    assert reply == {"via": "mesh", "greeter": {"greeting": "Hello, Ada!", "from": "greeter"}}
    status, output = django_capability.build(str(folder / "web"))
    assert status == 0, output
    css = httpx.get(rt.url + "/static/site.css", timeout=30)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_watt_build_runs_each_applications_build_step(project, tmp_path):
    import json
    import sys

    from support import APPS, ROOT

    static_root = tmp_path / "collected"
    config = tmp_path / "watt.json"
    config.write_text(json.dumps({"entrypoint": "site", "applications": [
        dict(django_app(project, DJANGO_STATIC_ROOT=str(static_root)), id="site"),
        {"id": "plain", "path": str(APPS / "basic"), "app": "main:app"}]}))
    done = subprocess.run([sys.executable, "-m", "watt.cli", "build", "-c", str(config)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "site: django build ok" in done.stdout
    assert "plain: asgi, nothing to build" in done.stdout
    assert (static_root / "admin" / "css" / "base.css").is_file()
