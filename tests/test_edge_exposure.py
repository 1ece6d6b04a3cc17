"""Only the entrypoint listens: the runtime's TCP listeners, read from /proc, are exactly
the entrypoint's (plus the metrics and management listeners when configured), whatever
its workers (subinterpreter or process) do."""

from __future__ import annotations

import json
import re
import sys

import pytest
from support import APPS, WattProcess, listening_ports, process_tree, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def start(tmp_path, *apps: dict, **extra) -> tuple[WattProcess, int]:
    config = {"applications": [
        {"id": "api", "path": str(APPS / "edge_scope"), "app": "main:app"}, *apps],
        "entrypoint": "api", **extra}
    (tmp_path / "watt.json").write_text(json.dumps(config))
    proc = WattProcess("-c", str(tmp_path / "watt.json"), "--port", "0")
    url = proc.wait_url()
    return proc, int(url.rsplit(":", 1)[1])


def test_only_the_entrypoint_listens(tmp_path):
    proc, port = start(tmp_path, {"id": "side", "path": str(APPS / "edge_scope"),
                                  "app": "main:app", "isolation": "process"})
    try:
        assert listening_ports(process_tree(proc.proc.pid)) == {port}
    finally:
        proc.kill()


def test_metrics_and_management_listen_only_when_configured(tmp_path):
    proc, port = start(tmp_path, metrics={"enabled": True, "port": 0},
                       managementApi={"hostname": "127.0.0.1", "port": 0,
                                      "token": "t" * 24})
    try:
        def logged() -> set[int]:
            return {int(m) for m in re.findall(
                r"(?:/ready and /live|management API also) at http://127\.0\.0\.1:(\d+)",
                proc.output())}

        wait_for(lambda: len(logged()) == 2)
        assert listening_ports(process_tree(proc.proc.pid)) == {port} | logged()
    finally:
        proc.kill()
