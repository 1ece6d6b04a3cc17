"""Only the entrypoint listens: the runtime's TCP listeners, read from /proc, are exactly
the entrypoint's (plus the metrics and management listeners when configured), whatever
its workers (subinterpreter or process) do."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from support import APPS, WattProcess, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants (process workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(children.get(p, []))
    return found


def listening_ports(pid: int) -> set[int]:
    inodes = set()
    for p in _tree(pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    target = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def start(tmp_path, **extra) -> tuple[WattProcess, int]:
    config = {"applications": [
        {"id": "api", "path": str(APPS / "edge_scope"), "app": "main:app"},
        {"id": "side", "path": str(APPS / "edge_scope"), "app": "main:app",
         "isolation": "process"}], "entrypoint": "api", **extra}
    (tmp_path / "watt.json").write_text(json.dumps(config))
    proc = WattProcess("-c", str(tmp_path / "watt.json"), "--port", "0")
    url = proc.wait_url()
    return proc, int(url.rsplit(":", 1)[1])


def test_only_the_entrypoint_listens(tmp_path):
    proc, port = start(tmp_path)
    try:
        assert listening_ports(proc.proc.pid) == {port}
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
        assert listening_ports(proc.proc.pid) == {port} | logged()
    finally:
        proc.kill()
