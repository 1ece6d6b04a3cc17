"""Configuration of the outbound HTTP pipeline: ``mesh.interceptors`` (every
application) and ``applications[].interceptors`` (one application).

Part of the schema in :mod:`watt.config` (kept apart only to keep that module
readable); the same rules hold: unknown keys are errors, keys are camelCase.
The worker receives the list as plain data (:func:`interceptors_spec`) and
loads the hooks itself (``watt/worker/outbound.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from watt.config_workers import CHECK_PATTERN


class InterceptorConfig(msgspec.Struct, forbid_unknown_fields=True, rename="camel",
                        frozen=True):
    """An interceptor with options: `use` names a class, built once per worker with
    `options` as keyword arguments."""

    use: Annotated[str, msgspec.Meta(
        pattern=CHECK_PATTERN,
        description="'module:Class' (e.g. 'watt.interceptors:Retry') or 'module:function'.")]
    options: Annotated[dict[str, Any], msgspec.Meta(
        description="Keyword arguments of the class (see docs/outbound.md).")] = {}


Interceptor = Annotated[str, msgspec.Meta(pattern=CHECK_PATTERN)] | InterceptorConfig

Interceptors = Annotated[
    list[Interceptor],
    msgspec.Meta(description="Hooks wrapping every outgoing HTTP request (mesh and external, "
                 "every client), outermost first: 'module:function' (an `async def "
                 "hook(request, call_next)`) or {use, options} (docs/outbound.md)."),
]


def outbound_cache_spec(http_cache) -> dict | None:
    """What a worker needs to use ``httpCache`` for its external GETs, or None."""
    if http_cache is None or not http_cache.enabled:
        return None
    return {"max_entry_size": http_cache.max_entry_size, "default_ttl": http_cache.default_ttl}


def interceptors_spec(runtime_wide: list, own: list | None) -> list[list]:
    """``[[use, options], ...]`` for a worker: the runtime-wide hooks, then the
    application's own."""
    return [[item, {}] if isinstance(item, str) else [item.use, dict(item.options)]
            for item in [*runtime_wide, *(own or ())]]
