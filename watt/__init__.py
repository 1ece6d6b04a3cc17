"""Watt for Python: many web applications, one process, one entrypoint.

Public API (everything else is private and may change)::

    import watt
    watt.run("watt.json")                       # blocking; SIGINT/SIGTERM stop it
    async with watt.Runtime("watt.json") as rt: # embedded
        print(rt.url)

Names are imported lazily: a worker interpreter imports ``watt.worker`` and
must not pull in the runtime (msgspec does not load in subinterpreters).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "ApplicationStartError",
    "ConfigError",
    "InjectResponse",
    "Runtime",
    "WattError",
    "cache",
    "load_config",
    "mesh",
    "run",
]

_LAZY = {
    "Runtime": ("watt.runtime", "Runtime"),
    "InjectResponse": ("watt.runtime", "InjectResponse"),
    "run": ("watt.main", "run"),
    "load_config": ("watt.config", "load_config"),
    "WattError": ("watt.errors", "WattError"),
    "ConfigError": ("watt.errors", "ConfigError"),
    "ApplicationStartError": ("watt.errors", "ApplicationStartError"),
    "mesh": ("watt.mesh", None),
    "cache": ("watt.cache", None),
}


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'watt' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
