"""httpCache.redis: two Watt runtimes share one store in a real redis-server (Debian's),
so a response cached through one is a hit for the other and an invalidation from
either is seen by both."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from support import app_config, wait_for

from watt.testing import RuntimeHandle

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed "
                                "(Debian: apt-get install redis-server; make test does it)")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redis")
    socket = folder / "redis.sock"
    server = subprocess.Popen([REDIS, "--port", "0", "--unixsocket", str(socket),
                               "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                               "--dir", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"unix://{socket}"

    def answers() -> bool:
        import redis

        try:
            return redis.Redis.from_url(url).ping()
        except (redis.ConnectionError, FileNotFoundError):
            return False

    try:
        wait_for(answers, timeout=20)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def _runtime(redis_url: str) -> RuntimeHandle:
    return RuntimeHandle({"entrypoint": "a", "httpCache": {
        "redis": {"url": redis_url, "prefix": "test:"}, "applications": ["b"]},
        "applications": [app_config("a", "cached"), app_config("b", "cached")]})


def fetch(rt, url: str) -> dict:
    reply = httpx.get(rt.url + "/fetch", params={"url": url}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_two_runtimes_share_hits_and_invalidations(redis_url):
    with _runtime(redis_url) as one, _runtime(redis_url) as two:
        url = "http://b.plt.local/cached/shared"
        first = fetch(one, url)
        assert "age" not in first["headers"]
        wait_for(lambda: "age" in fetch(two, url)["headers"])  # stored in a task: soon
        hit = fetch(two, url)
        assert hit["body"] == first["body"]  # made by one's worker, served to two's
        assert httpx.get(two.url + "/invalidate", params={"tag": "shared"}).text == "ok"
        wait_for(lambda: "age" not in fetch(one, url)["headers"])
        assert fetch(one, url)["body"] != first["body"]  # made again (served: 2)
        # The management side of one drops a key for both.
        dropped = one._call(one.runtime.cache.invalidate(keys=[url]))
        assert dropped == 1 and "age" not in fetch(two, url)["headers"]
        assert one.runtime.cache.snapshot()["b"]["stores"] >= 2
        assert two.runtime.cache.snapshot()["b"]["hits"] >= 1


def test_the_store_is_cleaned_up(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = client.keys("test:*")
    assert keys and all(client.ttl(key) > 0 for key in keys)  # every key expires
