"""Two Watt instances on loopback behind a real nginx (Debian's package): under a
bounded load, one instance is sent SIGTERM — it drains, nginx stops sending to it,
no request fails — then it starts again and traffic returns to it."""

from __future__ import annotations

import getpass
import grp
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from support import APPS, WattProcess, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; `make test` runs "
    "scripts/system-deps, which installs it on Debian/Ubuntu)")


def _free_port() -> int:
    # nginx cannot report the port it bound, so the test picks one for it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Instance:
    """One `watt start` of the shared config, told apart by INSTANCE_NAME."""

    def __init__(self, tmp_path: Path, name: str, port: int = 0, probes: int = 0,
                 drain: int = 300, folder: str = "basic", extra: dict | None = None,
                 engine: str = "auto") -> None:
        self.name = name
        config = tmp_path / f"{name}.json"
        config.write_text(json.dumps({
            "server": {"port": port, "engine": engine},
            "metrics": {"enabled": True, "port": probes},
            # /ready says 503 for `drain` ms after SIGTERM before the listener closes.
            "deploy": {"drainDelay": drain},
            "applications": [{"id": "web", "path": str(APPS / folder), "app": "main:app",
                              "env": {"APP_NAME": name}}], **(extra or {})}))
        self.proc = WattProcess("-c", str(config))

    def wait(self) -> Instance:
        """Until it serves: its entrypoint and probes URLs are known."""
        self.url = self.proc.wait_url()
        self.port = int(self.url.rsplit(":", 1)[1])
        wait_for(lambda: re.search(r"/ready and /live at (http://[\d.:]+)",
                                   self.proc.output()) is not None)
        self.probes = re.search(r"/ready and /live at (http://[\d.:]+)", self.proc.output())[1]
        return self

    def ready(self) -> int | None:
        try:
            return httpx.get(self.probes + "/ready", timeout=5).status_code
        except httpx.TransportError:
            return None


def _start_nginx(tmp_path: Path, upstreams: list[int]) -> tuple[subprocess.Popen, str]:
    """nginx in front of ``upstreams``; returns it and its URL."""
    port = _free_port()
    nginx = subprocess.Popen([NGINX, "-c", str(_nginx_conf(tmp_path, port, upstreams)),
                              "-p", str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    return nginx, f"http://127.0.0.1:{port}"


def _stop_nginx(nginx: subprocess.Popen) -> None:
    nginx.send_signal(signal.SIGQUIT)  # graceful
    try:
        nginx.wait(10)
    except subprocess.TimeoutExpired:
        nginx.kill()


def _nginx_conf(tmp_path: Path, port: int, upstreams: list[int]) -> Path:
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;\n"
                      for p in upstreams)
    temp = "".join(f"  {kind}_temp_path {tmp_path}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = getpass.getuser()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
user {user} {grp.getgrgid(os.getgid()).gr_name};
worker_processes 1;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}  upstream watt {{
{servers}    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://watt;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 2;
    }}
  }}
}}
""")
    return conf


def _closed_after_one_response(url: str) -> bytes:
    """A keep-alive GET on a raw socket: the head of the response, once the server has
    closed the connection after it (a timeout if it keeps it open)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /whoami HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # until EOF: the server closed it
            data += chunk
    return data.partition(b"\r\n\r\n")[0].lower()


@pytest.mark.parametrize("engine", ["watt", "hypercorn", "granian"])
def test_drain_delay_serves_with_connection_close_while_ready_says_503(
        tmp_path: Path, engine: str) -> None:
    if engine == "granian":
        pytest.importorskip("granian.server.embed", reason="granian is not installed")
    solo = Instance(tmp_path, "solo", drain=2000, engine=engine).wait()
    try:
        with httpx.Client(timeout=10) as http:
            assert http.get(solo.url + "/whoami").headers.get("connection") != "close"
            solo.proc.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: solo.ready() == 503, timeout=5)
            # Still served, on the pooled connection and on a new one, each told to close.
            for reply in (http.get(solo.url + "/whoami"), httpx.get(solo.url + "/whoami")):
                assert reply.status_code == 200 and reply.headers["connection"] == "close"
            # ... and the engine does close the connection after that response.
            head = _closed_after_one_response(solo.url)
            assert head.startswith(b"http/1.1 200") and b"connection: close" in head
        assert solo.proc.wait(10) == 0
    finally:
        solo.proc.kill()


@needs_nginx
def test_sigterm_one_of_two_instances_behind_nginx_fails_no_request(tmp_path: Path) -> None:
    one, two = Instance(tmp_path, "one"), Instance(tmp_path, "two")
    one.wait(), two.wait()
    nginx, front = _start_nginx(tmp_path, [one.port, two.port])
    results: list[tuple[int, str]] = []  # (status, instance) of every request
    stop = threading.Event()
    restarted: list[Instance] = []

    def client(post: bool) -> None:
        # POSTs too: nginx never resends one (not idempotent) once it reached an upstream,
        # so a connection the draining instance closes under it would be a failure.
        with httpx.Client(timeout=10) as http:
            for _ in range(1500):  # bounded; the test stops it once traffic returned
                if stop.is_set():
                    return
                try:
                    reply = http.post(front + "/whoami", content=b"x" * 64) if post \
                        else http.get(front + "/whoami")
                    results.append((reply.status_code, reply.json().get("app", "?")
                                    if reply.status_code == 200 else reply.text[:200]))
                except httpx.HTTPError as exc:  # a failure, counted
                    results.append((0, repr(exc)))

    def answered_by(name: str, since: int) -> bool:
        return any(who == name for _, who in results[since:])

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
    try:
        wait_for(lambda: _answers(front), timeout=10)
        for thread in threads:
            thread.start()
        wait_for(lambda: answered_by("one", 0) and answered_by("two", 0), timeout=10)
        # Requests in flight on `two` when it is told to stop: they must finish.
        with httpx.Client(timeout=10) as direct:
            held = tmp_path / "held"  # /hold answers once held/release exists
            held.mkdir()
            slow = threading.Thread(target=lambda: results.append((direct.get(
                two.url + "/hold", params={"dir": str(held), "id": "1"}).status_code,
                "two-slow")))
            slow.start()
            wait_for(lambda: any(held.glob("*.held")))
            two.proc.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: two.ready() == 503, timeout=5)  # draining: not ready
            assert slow.is_alive()  # ...while its request is still being answered
            (held / "release").touch()
            slow.join(10)
        assert two.proc.wait(15) == 0
        gone = len(results)
        wait_for(lambda: len(results) > gone + 50, timeout=10)
        assert not answered_by("two", gone + 5)  # nginx sends nothing to a stopped instance
        # Start it again on the same ports: traffic returns to it.
        restarted.append(Instance(tmp_path, "two", port=two.port,
                                  probes=int(two.probes.rsplit(":", 1)[1])).wait())
        back = len(results)
        wait_for(lambda: answered_by("two", back), timeout=10)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(15)
        _stop_nginx(nginx)
        for instance in (one, two, *restarted):
            instance.proc.kill()
    failed = [r for r in results if r[0] != 200]
    assert failed == [], f"{len(failed)} of {len(results)} failed: {failed[:5]}; nginx: " \
        + (tmp_path / "error.log").read_text()[-2000:]
    assert (200, "two-slow") in results
    assert len(results) > 100


def _answers(url: str, path: str = "/whoami") -> bool:
    try:
        return httpx.get(url + path, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


REDIS = shutil.which("redis-server")


@needs_nginx
@pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (apt-get install "
                    "redis-server; `make test` runs scripts/system-deps, which installs it)")
def test_two_instances_behind_nginx_share_cache_hits_and_invalidations(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="httpCache.redis needs `pip install 'watt[redis]'`")
    sock = tmp_path / "redis.sock"
    redis = subprocess.Popen([REDIS, "--port", "0", "--unixsocket", str(sock), "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = {"httpCache": {"entrypoint": True,
                           "redis": {"url": f"unix://{sock}", "prefix": "lb:"}}}
    instances: list[Instance] = []
    nginx = None
    try:
        wait_for(sock.exists, timeout=10)
        instances = [Instance(tmp_path, name, folder="cached", extra=cache)
                     for name in ("one", "two")]
        one, two = (instance.wait() for instance in instances)
        nginx, front = _start_nginx(tmp_path, [one.port, two.port])
        wait_for(lambda: _answers(front, "/counts"), timeout=10)
        import redis as redis_client

        store = redis_client.Redis.from_url(f"unix://{sock}")

        def stored() -> bool:  # an entry is stored a moment after its response
            return bool(store.keys("lb:k:*"))

        with httpx.Client(timeout=10) as http:
            def get(instance: Instance) -> httpx.Response:
                # The key is the URL the client asked for: nginx's Host is "watt".
                return http.get(instance.url + "/cached/page", headers={"host": "watt"})

            made = http.get(front + "/cached/page").json()  # made by one of the two
            wait_for(stored)
            for instance in (one, two):  # both answer it from the one store
                reply = get(instance)
                assert "age" in reply.headers and reply.json() == made
            # Invalidated through nginx (whichever instance the app ran on): gone for both.
            assert http.get(front + "/invalidate", params={"tag": "page"}).text == "ok"
            wait_for(lambda: not stored())
            remade = get(one)
            assert "age" not in remade.headers and remade.json() != made
            wait_for(stored)
            again = get(two)  # one's new response, not the invalidated one
            assert "age" in again.headers and again.json() == remade.json()
    finally:
        if nginx is not None:
            _stop_nginx(nginx)
        for instance in instances:
            instance.proc.kill()
        redis.terminate()
        redis.wait(10)
