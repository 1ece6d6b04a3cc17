"""``--env`` and ``watt config``'s secret masking (used by :mod:`watt.cli`)."""

from __future__ import annotations

import os
import re
from typing import Any

import click

from .config_env import ENV_VARIABLE

__all__ = ["env_option", "mask_config"]


def _set_environment(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:  # the runtime, `watt config` and the applications all see it
        os.environ[ENV_VARIABLE] = value


#: ``--env E``: the same as ``WATT_ENV=E`` (watt.E.json is merged over watt.json).
env_option = click.option(
    "--env", "environment", default=None, metavar="ENV", expose_value=False,
    callback=_set_environment,
    help=f"Merge the overlay watt.ENV.json (or .toml) over the config; sets {ENV_VARIABLE}.")


def mask_config(data: Any, redact: list[str]) -> Any:
    """``data`` (a config as JSON builtins) with secrets replaced by ``****``: values
    whose key looks secret (as in ``watt env``), passwords in URLs, and keys whose
    dotted path matches a ``logger.redact`` path (``*`` = any one key or index)."""
    from .management.endpoints import _URL_PASSWORD, MASK, SECRET_NAME  # 0.3 s: only here

    def secret(path: tuple[str, ...], value: Any) -> bool:
        if value is None:
            return False
        inner = path[1:] if path[0] == "config" else path  # --resolved nests the config
        if any(_matches(pattern, path) or _matches(pattern, inner) for pattern in redact):
            return True
        return isinstance(value, (str, int, float)) and not isinstance(value, bool) and \
            bool(SECRET_NAME.search(path[-1]))

    def mask(data: Any, path: tuple[str, ...]) -> Any:
        if isinstance(data, dict):
            return {k: MASK if secret(path + (str(k),), v) else mask(v, path + (str(k),))
                    for k, v in data.items()}
        if isinstance(data, list):
            return [mask(v, path + (str(i),)) for i, v in enumerate(data)]
        if isinstance(data, str):
            return _URL_PASSWORD.sub(lambda m: m["head"] + MASK, data)
        return data

    return mask(data, ())


def _matches(pattern: str, path: tuple[str, ...]) -> bool:
    parts = re.split(r"\.|\[(\d+)\]", pattern)
    parts = [p for p in parts if p]
    return len(parts) == len(path) and all(
        p == "*" or p.lower() == k.lower() for p, k in zip(parts, path, strict=True))
