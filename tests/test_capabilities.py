"""The framework capabilities (fastapi, litestar, quart) and the static-site one, end to end:
real runtimes, real subinterpreters and processes, real sockets on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
import pytest
from loguru import logger
from support import APPS, ROOT, app_config, reset_memory_high_water, status_kb

from capabilities import fastapi, litestar, quart, static
from watt.capability import discover
from watt.testing import RuntimeHandle

FRAMEWORKS = {"api": ("fastapi_app", "fastapi"), "lite": ("litestar_app", "litestar"),
              "qrt": ("quart_app", "quart")}


def detected(folder: str) -> dict:
    """An application config with neither `kind` nor `app`: both are detected."""
    return {"id": folder.split("/")[-1].replace("_", "-"), "path": folder}


# -- frameworks under `auto`, reached through the mesh ---------------------------------
@pytest.fixture(scope="module")
def frameworks():
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    apps = [app_config("front")] + [
        {"id": app_id, "path": str(APPS / folder)} for app_id, (folder, _) in FRAMEWORKS.items()]
    try:
        with RuntimeHandle({"entrypoint": "front", "applications": apps}) as rt:
            rt.lines = lines
            yield rt
    finally:
        logger.remove(sink)


def whoami_via_mesh(rt, target: str) -> dict:
    reply = httpx.get(rt.url + "/mesh", params={"target": f"{target}.plt.local"},
                      timeout=30).json()
    assert reply["status"] == 200 and reply["sockets"] == 0
    return json.loads(reply["body"])


def test_each_framework_kind_is_detected_without_kind_or_app(frameworks):
    kinds = {a["id"]: a["kind"] for a in frameworks.applications()}
    assert kinds == {"front": "asgi", "api": "fastapi", "lite": "litestar", "qrt": "quart"}


@pytest.mark.parametrize("app_id", ["api", "lite"])
def test_fastapi_and_litestar_under_auto_go_straight_to_a_process(frameworks, app_id):
    info = whoami_via_mesh(frameworks, app_id)
    assert info["app"] == FRAMEWORKS[app_id][1] and info["pid"] != os.getpid()
    [app] = [a for a in frameworks.applications() if a["id"] == app_id]
    assert app["isolation"] == "process" and app["workers"][0]["kind"] == "process"
    # The capability says "process": no doomed subinterpreter attempt (no refused
    # import), one line saying why it runs in processes.
    assert not [line for line in frameworks.lines
                if f"'{app_id}' imports" in line and "cannot load" in line]
    assert any(f"application '{app_id}' runs in process workers" in line
               for line in frameworks.lines)
    assert any(f"application '{app_id}' ready: 1 process worker(s)" in line
               for line in frameworks.lines)


def test_quart_under_auto_stays_in_a_subinterpreter(frameworks):
    info = whoami_via_mesh(frameworks, "qrt")
    assert info["app"] == "quart"
    assert info["pid"] == os.getpid() and info["interpreter"] != 0
    assert [a["isolation"] for a in frameworks.applications() if a["id"] == "qrt"] == [
        "subinterpreter"]


@pytest.mark.parametrize(("caller", "target", "expect"),
                         [("qrt", "lite", "litestar"), ("lite", "qrt", "quart"),
                          ("lite", "api", "fastapi")])
def test_framework_apps_call_each_other_through_the_mesh(frameworks, caller, target, expect):
    reply = frameworks.inject(caller, "GET", f"/mesh?target={target}.plt.local").json()
    assert reply["status"] == 200 and reply["body"]["app"] == expect


def test_slow_quart_requests_leave_no_task_behind(frameworks):
    # Quart waits for http.disconnect after its response: the worker must say it.
    before = frameworks.inject("qrt", "GET", "/tasks").json()["tasks"]
    for _ in range(3):
        assert frameworks.inject("qrt", "GET", "/slow").text == "slow"
    assert frameworks.inject("qrt", "GET", "/tasks").json()["tasks"] == before


# -- each kind as the entrypoint, under forced and automatic isolation --------------------
@pytest.mark.parametrize(("folder", "isolation", "same_process"), [
    ("fastapi_app", "process", False), ("litestar_app", "process", False),
    ("quart_app", "process", False), ("quart_app", "auto", True),
    ("static_site", "process", False)])
def test_each_kind_serves_as_the_entrypoint(watt_runtime, folder, isolation, same_process):
    config = {"entrypoint": "app", "applications": [
        {"id": "app", "path": str(APPS / folder), "isolation": isolation}]}
    rt = watt_runtime(config)
    [app] = rt.applications()
    assert app["isolation"] == ("subinterpreter" if same_process else "process")
    pid = app["workers"][0]["pid"]
    assert (pid == os.getpid()) is same_process
    if folder == "static_site":
        assert "Home page" in httpx.get(rt.url + "/", timeout=30).text
    else:
        info = httpx.get(rt.url + "/whoami", timeout=30).json()
        assert info["pid"] == pid and (info["interpreter"] != 0) is same_process


# -- detection reads files, never imports them --------------------------------------------
def write(folder, name: str, text: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return str(folder)


def test_framework_detection_needs_an_import_and_an_application(tmp_path):
    only_mentioned = write(tmp_path / "a", "main.py", "# a fastapi port, one day\napp = 1\n")
    assert fastapi.detect(only_mentioned) is None
    plain = write(tmp_path / "b", "main.py", "import fastapi\n\napp = fastapi.FastAPI()\n")
    assert fastapi.detect(plain) == {"app": "main:app"}
    no_app = write(tmp_path / "c", "main.py", "from litestar import Litestar\nx = Litestar()\n")
    assert litestar.detect(no_app) is None
    factory = write(tmp_path / "d", "app.py",
                    "from litestar import Litestar\n\ndef create_app():\n    return Litestar()\n")
    assert litestar.detect(factory) == {"app": "app:create_app()"}
    asgi = write(tmp_path / "e", "asgi.py", "from quart import Quart\napplication = Quart('x')\n")
    assert quart.detect(asgi) == {"app": "asgi:application"}
    assert quart.detect(plain) is None and fastapi.detect(asgi) is None


def test_a_fastapi_app_that_imports_starlette_is_detected_as_fastapi(tmp_path):
    folder = write(tmp_path / "x", "main.py", "from fastapi import FastAPI\n"
                   "from starlette.responses import JSONResponse\n\napp = FastAPI()\n")
    ordered = sorted(discover().values(), key=lambda c: -c.priority)
    assert next(c.name for c in ordered if c.detect(folder)) == "fastapi"


def test_static_detection_wants_index_html_and_no_python_entry(tmp_path):
    site = write(tmp_path / "site", "index.html", "<h1>hi</h1>")
    assert static.detect(site) == {"path": site}
    write(tmp_path / "site", "main.py", "app = None\n")
    assert static.detect(site) is None
    assert static.detect(write(tmp_path / "bare", "page.html", "x")) is None


# -- the static site --------------------------------------------------------------------
BIG = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    root = base / "static_site"
    shutil.copytree(APPS / "static_site", root)
    (base / "secret.txt").write_text("TOP SECRET")
    (root / ".env").write_text("TOP SECRET")
    (root / "escape").symlink_to(base)
    (root / "link-out.txt").symlink_to(base / "secret.txt")
    (root / "link-in.txt").symlink_to(root / "letters.txt")
    big = bytes(range(256)) * (BIG // 256)
    (root / "big.bin").write_bytes(big)
    assets = base / "assets"  # no index.html: served only because `kind` says so
    write(assets, "readme.txt", "assets readme")
    config = {"entrypoint": "static-site", "applications": [
        detected(str(root)), app_config("front"),
        {"id": "assets", "path": str(assets), "kind": "static"}]}
    with RuntimeHandle(config) as rt:
        rt.big_sha = hashlib.sha256(big).hexdigest()
        yield rt


def get(rt, path: str, method: str = "GET", **headers) -> httpx.Response:
    return httpx.request(method, rt.url + path, headers=headers, timeout=30)


def raw_get(rt, path: str) -> tuple[int, bytes]:
    """A request with the path exactly as given: httpx would remove dot segments."""
    url = urlsplit(rt.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_static_is_detected_and_runs_in_a_subinterpreter(site):
    apps = {a["id"]: a for a in site.applications()}
    assert apps["static-site"]["kind"] == "static"
    assert apps["static-site"]["isolation"] == "subinterpreter"
    assert apps["static-site"]["workers"][0]["pid"] == os.getpid()


@pytest.mark.parametrize(("path", "content_type"), [
    ("/", "text/html; charset=utf-8"), ("/style.css", "text/css; charset=utf-8"),
    ("/app.js", "text/javascript; charset=utf-8"),
    ("/data.json", "application/json; charset=utf-8"),
    ("/logo.svg", "image/svg+xml; charset=utf-8"), ("/big.bin", "application/octet-stream"),
    ("/blob.zzq", "application/octet-stream")])
def test_content_types(site, path, content_type):
    response = get(site, path, method="HEAD")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type


def test_index_files_and_directory_redirect(site):
    assert "Home page" in get(site, "/").text
    assert "Sub page" in get(site, "/sub/").text
    redirect = get(site, "/sub?x=1")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/sub/?x=1"
    assert get(site, "/noindex/").status_code == 404  # no listing
    assert get(site, "/letters.txt/").status_code == 404


def test_not_found_uses_404_html(site):
    response = get(site, "/nope.html")
    assert response.status_code == 404 and "Custom not found" in response.text


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/sub/%2E%2E/%2e%2e/secret.txt",
    "/..%2fsecret.txt", "/sub/../../secret.txt", "//etc/passwd", "/escape/secret.txt",
    "/link-out.txt", "/.env", "/%2eenv", "/sub\\..\\..\\secret.txt", "/letters.txt%00.html"])
def test_traversal_attempts_are_404(site, path):
    status, body = raw_get(site, path)
    assert status == 404 and b"TOP SECRET" not in body


def test_symlink_inside_the_root_is_served(site):
    assert get(site, "/link-in.txt").text == "0123456789abcdefghijklmnopqrstuvwxyz"


def test_etag_and_if_none_match(site):
    first = get(site, "/style.css")
    etag = first.headers["etag"]
    again = get(site, "/style.css", **{"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert get(site, "/style.css", **{"if-none-match": f'W/{etag}, "x"'}).status_code == 304
    assert get(site, "/style.css", **{"if-none-match": '"other"'}).status_code == 200


def test_last_modified_and_if_modified_since(site):
    last_modified = get(site, "/style.css").headers["last-modified"]
    assert get(site, "/style.css", **{"if-modified-since": last_modified}).status_code == 304
    older = formatdate(0, usegmt=True)
    assert get(site, "/style.css", **{"if-modified-since": older}).status_code == 200
    # If-None-Match decides alone when both are sent (RFC 9110 13.2.2).
    both = get(site, "/style.css", **{"if-none-match": '"other"',
                                      "if-modified-since": last_modified})
    assert both.status_code == 200


@pytest.mark.parametrize(("header", "body", "content_range"), [
    ("bytes=0-9", b"0123456789", "bytes 0-9/36"), ("bytes=30-", b"uvwxyz", "bytes 30-35/36"),
    ("bytes=-3", b"xyz", "bytes 33-35/36"), ("bytes=34-99", b"yz", "bytes 34-35/36")])
def test_range_requests(site, header, body, content_range):
    response = get(site, "/letters.txt", range=header)
    assert response.status_code == 206 and response.content == body
    assert response.headers["content-range"] == content_range
    assert response.headers["content-length"] == str(len(body))


def test_unsatisfiable_malformed_and_stale_ranges(site):
    response = get(site, "/letters.txt", range="bytes=36-")
    assert response.status_code == 416 and response.headers["content-range"] == "bytes */36"
    for ignored in ("bytes=9-2", "lines=1-2", "bytes=0-1,4-5"):
        assert get(site, "/letters.txt", range=ignored).status_code == 200
    stale = get(site, "/letters.txt", range="bytes=0-1", **{"if-range": '"old"'})
    assert stale.status_code == 200 and len(stale.content) == 36
    etag = get(site, "/letters.txt").headers["etag"]
    fresh = get(site, "/letters.txt", range="bytes=0-1", **{"if-range": etag})
    assert fresh.status_code == 206 and fresh.content == b"01"


def test_head_has_the_headers_and_no_body(site):
    head = get(site, "/big.bin", method="HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(BIG)
    assert head.headers["accept-ranges"] == "bytes"
    assert get(site, "/", method="POST").status_code == 405


def test_20_mb_file_is_streamed_in_chunks(site):
    baseline = reset_memory_high_water()
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", site.url + "/big.bin", timeout=60) as response:
        assert response.headers["content-length"] == str(BIG)
        for piece in response.iter_raw():
            digest.update(piece)
            size += len(piece)
    assert (size, digest.hexdigest()) == (BIG, site.big_sha)
    growth_mb = (status_kb("VmHWM") - baseline) / 1024
    assert growth_mb < 12, f"memory grew by {growth_mb:.0f} MB serving a 20 MB file"
    tail = get(site, "/big.bin", range=f"bytes={BIG - 1000}-")
    assert tail.status_code == 206 and tail.content == (bytes(range(256)) * 4)[-1000:]


def test_static_sites_through_the_mesh(site):
    via = site.inject("front", "GET", "/mesh?target=static-site.plt.local&path=/sub/").json()
    assert via["status"] == 200 and "Sub page" in via["body"] and via["sockets"] == 0
    assets = site.inject("front", "GET", "/mesh?target=assets.plt.local&path=/readme.txt")
    assert assets.json()["body"] == "assets readme"


# -- the examples ---------------------------------------------------------------------
def test_fastapi_example_calls_starlette_through_the_mesh(watt_runtime):
    rt = watt_runtime(ROOT / "examples" / "fastapi" / "watt.json")
    quote = httpx.get(rt.url + "/quote/1?quantity=3", timeout=30).json()
    assert quote["total_cents"] == 7500 and quote["product"]["name"] == "teapot"
    assert quote["served_by"]["api_pid"] != os.getpid()
    assert quote["served_by"]["catalog"]["pid"] == os.getpid()
    assert quote["served_by"]["catalog"]["interpreter"] != 0
    assert httpx.get(rt.url + "/quote/9", timeout=30).status_code == 404
    assert [p["name"] for p in httpx.get(rt.url + "/products", timeout=30).json()] == [
        "teapot", "kettle"]


def test_static_example(watt_runtime):
    rt = watt_runtime(ROOT / "examples" / "static" / "watt.json")
    assert "Served by Watt" in httpx.get(rt.url, timeout=30).text
    about = httpx.get(rt.url + "/about", timeout=30, follow_redirects=True)
    assert about.url.path == "/about/" and "<h1>About</h1>" in about.text
    css = httpx.get(rt.url + "/assets/style.css", timeout=30)
    assert css.headers["content-type"] == "text/css; charset=utf-8"
