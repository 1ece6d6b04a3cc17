"""What start-up imports: optional subsystems stay out until a config uses them.

Each check runs a fresh interpreter (``sys.modules`` of this one holds whatever
other tests imported) and lists which of the named modules got loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec

from watt import prefetch
from watt.config import LoadedConfig, load_config
from watt.edge import BUILTIN


def loaded_after(statement: str, modules: list[str]) -> list[str]:
    """The ``modules`` present in ``sys.modules`` after ``statement`` in a new process."""
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_runtime_import_leaves_out_metrics_exposition_and_http_clients():
    # prometheus_client's exposition pulls in http.server, urllib.request and email;
    # the log transports, zipkin and OTLP exporters import urllib.request when they send.
    heavy = ["prometheus_client", "urllib.request", "http.server", "logging.handlers",
             "watt.observability.metrics_families", "watt.management", "hypercorn",
             "granian"]
    assert loaded_after("import watt.runtime", heavy) == []


def test_metrics_names_still_importable_from_metrics_module():
    # families and as_json moved to metrics_families; the old import path still works.
    assert loaded_after("from watt.observability.metrics import as_json, families",
                        ["prometheus_client", "watt.observability.metrics_families"]) == [
        "prometheus_client", "watt.observability.metrics_families"]


def test_worker_bootstrap_leaves_out_importlib_abc():
    # Paid by every worker: the mesh import hook is a plain finder, not importlib.abc's.
    assert loaded_after("import watt.worker.bootstrap",
                        ["importlib.abc", "importlib.resources", "tempfile", "urllib.request",
                         "prometheus_client"]) == []


def _config(**changes) -> LoadedConfig:
    config = load_config({"entrypoint": "a", "applications": [{"id": "a", "path": "."}]})
    for key, value in changes.items():
        section, _, field = key.partition("__")
        setattr(config, section, msgspec.structs.replace(getattr(config, section),
                                                         **{field: value}))
    return config


def test_prefetch_names_the_engine_edge_and_management_modules():
    names = prefetch.modules_after_workers(_config(), None, True)
    assert names[:len(BUILTIN)] == list(BUILTIN)
    assert {"watt.http1", "httptools", "wsproto", "watt.management"} <= set(names)
    assert "hypercorn.asyncio" not in names
    assert len(names) == len(set(names))


def test_prefetch_follows_engine_metrics_and_management():
    granian = prefetch.modules_after_workers(_config(), "granian", False)
    assert "granian.server.embed" in granian and "watt.management" not in granian
    assert "httptools" not in granian
    probes = prefetch.modules_after_workers(_config(metrics__enabled=True), "watt", False)
    assert "hypercorn.asyncio" in probes


def test_prefetch_ignores_a_module_that_does_not_import():
    prefetch._import_all(["watt_no_such_module_for_prefetch", "json"])  # does not raise
    assert "watt_no_such_module_for_prefetch" not in sys.modules
